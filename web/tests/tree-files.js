// chat-server embeds the files of web/ when it is built (server/src/web.rs).
// A binary built before the files here were changed serves older ones, so a
// browser context can be told to take the page's files from this tree
// instead: each request still goes to the real server, whose headers (the
// Content-Security-Policy above all) are kept; only the body is replaced.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** This tree's web/ directory. */
export const WEB_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** The page's files in `dir`, by the path they are served at. */
export function pageFiles(dir = WEB_DIR) {
  const files = new Map([['/', path.join(dir, 'index.html')]]);
  for (const name of readdirSync(dir)) {
    if (name !== 'index.html' && TYPES[path.extname(name)]) files.set(`/${name}`, path.join(dir, name));
  }
  return files;
}

/** Whether the chat-server binary at `binary` embeds exactly the files of
 * `dir` (include_bytes puts each file's bytes into it as they are). */
export function embedsTree(binary, dir = WEB_DIR) {
  const image = readFileSync(binary);
  return [...pageFiles(dir).values()].every((file) => image.includes(readFileSync(file)));
}

/** What a browser whose pages get their files this way must be launched
 * with: Chromium takes a page fulfilled by the test for one of unknown
 * address, which its Local Network Access checks then forbid to open a
 * socket to the loopback server. Served by the server itself, the page is
 * a loopback one, and needs no such flag. */
export const TREE_FILES_BROWSER_ARGS = ['--disable-features=LocalNetworkAccessChecks'];

/**
 * Makes every page of `context` get the files of `dir` for `baseUrl`. A path
 * the server does not know (a file added since it was built) gets the
 * headers of the page itself, with the file's own type.
 */
export async function serveTreeFiles(context, baseUrl, dir = WEB_DIR) {
  if (!existsSync(path.join(dir, 'index.html'))) throw new Error(`${dir} holds no index.html`);
  const files = pageFiles(dir);
  const origin = new URL(baseUrl).origin;
  let pageHeaders = null;
  await context.route(
    (url) => url.origin === origin && files.has(url.pathname),
    async (route) => {
      const url = new URL(route.request().url());
      const response = await route.fetch();
      // The length (and any encoding) was the served body's, not this one's.
      const { 'content-length': _length, 'content-encoding': _encoding, ...served } = response.headers();
      let headers = served;
      if (url.pathname === '/' && response.status() === 200) pageHeaders = headers;
      if (response.status() !== 200) {
        if (pageHeaders === null) {
          const index = await route.fetch({ url: new URL('/', origin).href });
          const { 'content-length': _length, 'content-encoding': _encoding, ...indexHeaders } = index.headers();
          pageHeaders = indexHeaders;
        }
        headers = { ...pageHeaders, 'content-type': TYPES[path.extname(url.pathname)] };
      }
      await route.fulfill({ status: 200, headers, body: readFileSync(files.get(url.pathname)) });
    },
  );
}
