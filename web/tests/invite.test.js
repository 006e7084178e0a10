// An invite-only server (`--invite-only`): the page asks for the invite that
// `chat-server admin invite` made once the server says it needs one, and
// registers with it.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, test } from 'node:test';

import { ChatServer, PASSWORD, SERVER_BIN, launchBrowser, openPage, screenshot, waitForState } from './helpers.js';

let server;
let browser;

before(async () => {
  server = await ChatServer.start({ args: ['--invite-only'] });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.dispose();
});

function invite() {
  const run = spawnSync(SERVER_BIN, ['--data-dir', server.dataDir, 'admin', 'invite', '--json'], { encoding: 'utf8' });
  assert.equal(run.status, 0, `admin invite: ${run.stderr}`);
  return JSON.parse(run.stdout).invite;
}

test('the invite field appears when the server asks for one, and an invite registers', async () => {
  const { page, context, watch } = await openPage(browser, server);
  try {
    assert.equal(await page.getByLabel('Invite').isVisible(), false, 'hidden until asked for');
    await page.getByLabel('User name').fill('alice');
    await page.getByLabel('Password').fill(PASSWORD);
    const create = page.getByRole('button', { name: 'Create account' });
    await create.click();
    await page.locator('#login-error', { hasText: 'by invite only' }).waitFor();
    await page.getByLabel('Invite').waitFor();

    await page.getByLabel('Invite').fill('made-up');
    await create.click();
    await page.locator('#login-error', { hasText: 'unknown, used or expired' }).waitFor();
    await screenshot(page, 'invite-refused.png');

    await page.getByLabel('Invite').fill(invite());
    await create.click();
    await waitForState(page, 'connected');
    assert.deepEqual(watch.errors.filter((e) => !/Failed to load resource/.test(e)), []);
  } finally {
    await context.close();
  }
});
