// Small DOM helpers. Everything received from the network reaches the page
// through `textContent` (via `el`), never as markup: a message such as
// `<img src=x onerror=alert(1)>` is shown as those characters.

/**
 * Creates an element. `props` sets properties (`className`, `type`, ...),
 * except `attrs` (attributes) and `dataset`; string children become text nodes.
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  const { attrs = {}, dataset = {}, ...rest } = props;
  Object.assign(node, rest);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  Object.assign(node.dataset, dataset);
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return node;
}

/** Control characters (other than tab and newline) shown as U+FFFD: the
 * server relays text exactly as sent, so escape sequences and the like are
 * the client's to neutralise. */
export function cleanText(text) {
  return String(text)
    .replace(/\r\n?/g, '\n')
    .replace(/[\u0000-\u0008\u000B-\u001F\u007F-\u009F]/g, '\uFFFD');
}

/** `HH:MM` in the reader's time zone and locale; the full date for a tooltip. */
export function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return { short: '', long: '' };
  return {
    short: date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }),
    long: date.toLocaleString([], { dateStyle: 'full', timeStyle: 'medium' }),
  };
}

/** Whether a scroll container shows its last line (give or take a little). */
export function atBottom(node) {
  return node.scrollHeight - node.scrollTop - node.clientHeight < 48;
}

/** `n thing` or `n things`. */
export function plural(n, thing) {
  return `${n} ${thing}${n === 1 ? '' : 's'}`;
}
