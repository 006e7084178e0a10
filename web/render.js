// Drawing the model (model.js) into the page: one conversation log per room,
// the room list and the member list. Nothing here changes the model or talks
// to the server; clicks are handed to the callbacks app.js gives.

import { atBottom, cleanText, el, formatTime, plural } from './view.js';
import { byteOrder } from './model.js';

/** Consecutive messages of one sender within this time share one header. */
const GROUP_MS = 3 * 60 * 1000;
/** Within this distance of the top of a conversation, older messages load. */
const LOAD_OLDER_PX = 40;

/**
 * The conversation of one room, kept as its own element so that switching
 * rooms is cheap and each keeps its scroll position. `render` brings the
 * element in line with the room's state, reusing the item of every entry
 * that is still there (by its key), so a new message costs one new item.
 */
export class RoomView {
  /** Items now in the log by key: `{node, sig}`; `sig` changes when the
   * item must be drawn anew (a message becoming grouped, a status change). */
  #items = new Map();
  /** The key of each item node (a message redrawn grouped is a new node). */
  #keyOf = new WeakMap();
  /** The key of the last item drawn, to tell an append from a prepend. */
  #lastKey = null;

  /**
   * `actions`: `loadOlder()`, `retry(clientId)` and `discard(clientId)`,
   * called when the user asks for them.
   */
  constructor(name, actions) {
    this.name = name;
    this.log = el('ol', {
      className: 'messages',
      tabIndex: 0,
      attrs: { role: 'log', 'aria-live': 'polite', 'aria-label': `Messages in ${name}` },
    });
    this.olderButton = el('button', { type: 'button', className: 'load-older-button' }, 'Load older messages');
    /** Always the log's first item; hidden when there is nothing older. */
    this.loader = el('li', { className: 'load-older', hidden: true }, this.olderButton);
    this.log.append(this.loader);
    this.olderButton.addEventListener('click', () => actions.loadOlder());
    this.log.addEventListener('scroll', () => {
      if (this.log.scrollTop < LOAD_OLDER_PX && !this.loader.hidden) actions.loadOlder();
    });
    this.log.addEventListener('click', (e) => {
      const button = e.target.closest('button[data-action]');
      if (!button) return;
      if (button.dataset.action === 'retry') actions.retry(button.dataset.clientId);
      if (button.dataset.action === 'discard') actions.discard(button.dataset.clientId);
    });
  }

  /**
   * Draws `room` (a RoomState). The view stays at the bottom
   * if it was there (or `follow` asks for it) and something came at the end;
   * otherwise the first message in view stays where it is on screen, so
   * older messages loading above, or old ones trimmed, do not move it.
   */
  render(room, { follow = false } = {}) {
    const log = this.log;
    const attached = log.isConnected;
    const wasAtBottom = attached && (follow || atBottom(log));
    const anchor = attached ? this.#firstInView() : null;

    const wanted = this.#wanted(room);
    this.#reconcile(wanted);

    this.loader.hidden = !room.hasOlder;
    this.olderButton.disabled = room.loadingOlder || !room.live;
    this.olderButton.textContent = room.loadingOlder ? 'Loading older messages…' : 'Load older messages';
    log.setAttribute('aria-busy', String(room.loadingOlder));

    const lastKey = wanted.at(-1)?.key ?? null;
    const grewAtEnd = lastKey !== this.#lastKey;
    this.#lastKey = lastKey;
    if (!attached) return;
    if (wasAtBottom && (grewAtEnd || follow)) {
      log.scrollTop = log.scrollHeight;
    } else if (anchor) {
      const node = this.#items.get(anchor.key)?.node;
      if (node) log.scrollTop += bottom(node, log) - anchor.bottom;
    }
  }

  /** The first message at least partly in view: its key, and where its
   * bottom edge is. The bottom, because a message that becomes grouped with
   * one loaded above it loses its header, not its text. */
  #firstInView() {
    const viewTop = this.log.getBoundingClientRect().top;
    for (const node of this.log.querySelectorAll('.msg[data-seq]')) {
      const rect = node.getBoundingClientRect();
      if (rect.bottom > viewTop) return { key: this.#keyOf.get(node), bottom: rect.bottom - viewTop };
    }
    return null;
  }

  /** Scrolls a room just opened to where reading goes on: the "new
   * messages" line if there is one, else the end. */
  showStart() {
    const marker = this.log.querySelector('.unread-marker');
    this.log.scrollTop = marker ? Math.max(0, marker.offsetTop - this.log.offsetTop - 16) : this.log.scrollHeight;
  }

  /** The items the log should hold, in order: `{key, sig, build}`. */
  #wanted(room) {
    const wanted = [];
    const days = new Set();
    let previous = null;
    let markerPlaced = false;
    const marker = room.marker
      ? { key: 'marker', sig: String(room.marker.count), build: () => markerItem(room.marker.count) }
      : null;
    for (const entry of room.entries) {
      if (marker && entry.key === room.marker.beforeKey) {
        wanted.push(marker);
        markerPlaced = true;
      }
      if (entry.kind === 'message') {
        const at = new Date(entry.sentAt);
        const day = at.toDateString();
        if (previous?.day !== day) {
          // A clock that went back could repeat a day: keys stay unique.
          let key = `day:${day}`;
          while (days.has(key)) key += '+';
          days.add(key);
          wanted.push({ key, sig: '', build: () => dayItem(entry.sentAt) });
          previous = null;
        }
        const grouped = previous !== null && previous.from === entry.from && at - previous.at < GROUP_MS;
        wanted.push({ key: entry.key, sig: grouped ? 'g' : '', build: () => messageItem(entry, grouped) });
        previous = { from: entry.from, at, day };
      } else {
        wanted.push({ key: entry.key, sig: '', build: () => noticeItem(entry) });
        // A notice between two messages ends their group; the day stays.
        previous = previous && { from: null, at: previous.at, day: previous.day };
      }
    }
    // Its first message is no longer held (trimmed, or a page loaded
    // since): the line goes at the top.
    if (marker && !markerPlaced) wanted.unshift(marker);
    for (const p of room.outbox) {
      wanted.push({
        key: `out:${p.clientId}`,
        sig: `${p.status}:${p.reason ?? ''}`,
        build: () => outboxItem(p),
      });
    }
    return wanted;
  }

  /** Makes the log hold exactly `wanted` after its loader, reusing items. */
  #reconcile(wanted) {
    const keep = new Set();
    let cursor = this.loader.nextSibling;
    for (const item of wanted) {
      keep.add(item.key);
      let known = this.#items.get(item.key);
      if (!known || known.sig !== item.sig) {
        const node = item.build();
        if (known) {
          if (cursor === known.node) cursor = cursor.nextSibling;
          known.node.remove();
        }
        known = { node, sig: item.sig };
        this.#items.set(item.key, known);
        this.#keyOf.set(node, item.key);
      }
      if (known.node === cursor) {
        cursor = cursor.nextSibling;
      } else {
        this.log.insertBefore(known.node, cursor);
      }
    }
    for (const [key, { node }] of this.#items) {
      if (keep.has(key)) continue;
      node.remove();
      this.#items.delete(key);
    }
  }
}

function bottom(node, log) {
  return node.getBoundingClientRect().bottom - log.getBoundingClientRect().top;
}

function markerItem(count) {
  return el('li', { className: 'unread-marker', attrs: { role: 'separator' } }, plural(count, 'new message'));
}

function dayItem(sentAt) {
  const at = new Date(sentAt);
  return el('li', { className: 'day', dataset: { day: at.toDateString() } }, at.toLocaleDateString([], { dateStyle: 'medium' }));
}

function noticeItem(entry) {
  if (entry.kind === 'gap') {
    const text =
      entry.from === entry.to
        ? `Message ${entry.from} is no longer available.`
        : `Messages ${entry.from}–${entry.to} are no longer available.`;
    return el('li', { className: 'notice gap', attrs: { role: 'note' } }, text);
  }
  return el('li', { className: `notice${entry.tone === 'warn' ? ' warn' : ''}`, attrs: entry.tone === 'warn' ? { role: 'note' } : {} }, entry.text);
}

/** One received message; `grouped`: it shares the header of the one above. */
function messageItem(m, grouped) {
  const time = formatTime(m.sentAt);
  return el(
    'li',
    {
      className: `msg${m.own ? ' own' : ''}${grouped ? ' grouped' : ''}`,
      dataset: { id: m.id, seq: String(m.seq) },
    },
    m.own || grouped ? null : avatar(m.from),
    el(
      'div',
      { className: 'body' },
      grouped
        ? null
        : el(
            'div',
            { className: 'meta' },
            el('bdi', { className: 'from' }, m.own ? 'You' : m.from),
            el('time', { dateTime: m.sentAt, title: time.long }, time.short),
          ),
      el('p', { className: 'text', dir: 'auto' }, cleanText(m.text)),
      grouped ? el('time', { className: 'grouped-time', dateTime: m.sentAt, title: time.long }, time.short) : null,
    ),
  );
}

/** Our own message before the server confirmed it, or after it refused it. */
function outboxItem(p) {
  const failed = p.status === 'failed';
  return el(
    'li',
    { className: `msg own pending${failed ? ' failed' : ''}`, dataset: { clientId: p.clientId } },
    el(
      'div',
      { className: 'body' },
      el(
        'div',
        { className: 'meta' },
        el('bdi', { className: 'from' }, 'You'),
        el('span', { className: 'status' }, failed ? `Not sent: ${p.reason}` : 'Sending…'),
      ),
      el('p', { className: 'text', dir: 'auto' }, cleanText(p.text)),
      failed
        ? el(
            'div',
            { className: 'failed-actions' },
            el('button', { type: 'button', className: 'link', dataset: { action: 'retry', clientId: p.clientId } }, 'Retry'),
            el('button', { type: 'button', className: 'link', dataset: { action: 'discard', clientId: p.clientId } }, 'Discard'),
          )
        : null,
    ),
  );
}

/** A round badge with the name's initial, coloured by a hash of the name so
 * each person keeps the same colour (classes, since the CSP forbids inline style). */
export function avatar(name) {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return el('span', { className: `avatar hue-${hash % 8}`, attrs: { 'aria-hidden': 'true' } }, name.slice(0, 1).toUpperCase());
}

/** Draws the room list; `onPick(name)` when one is clicked. Returns the
 * unread messages of all rooms together. */
export function renderRoomList(list, empty, model, onPick) {
  const rooms = [...model.rooms.values()].sort((a, b) => byteOrder(a.name, b.name));
  list.replaceChildren(
    ...rooms.map((r) => {
      const size = r.size;
      const label = [
        r.name,
        size === null ? null : plural(size, 'member'),
        r.joined ? 'joined' : 'not joined',
        r.unread ? plural(r.unread, 'unread message') : null,
        r.lastActivity ? `last message ${activityText(r.lastActivity).long}` : null,
      ]
        .filter(Boolean)
        .join(', ');
      const button = el(
        'button',
        {
          type: 'button',
          className: `room-button${r.joined ? ' joined' : ''}`,
          attrs: { 'aria-label': label, ...(r.name === model.current ? { 'aria-current': 'true' } : {}) },
          dataset: { room: r.name },
        },
        el('span', { className: 'room-hash', attrs: { 'aria-hidden': 'true' } }, '#'),
        el('span', { className: 'room-name' }, r.name),
        r.joined ? el('span', { className: 'joined-mark', title: 'Joined' }, 'joined') : null,
        r.unread ? el('span', { className: 'badge unread' }, String(r.unread)) : null,
        r.lastActivity
          ? el(
              'time',
              { className: 'room-activity', dateTime: r.lastActivity, title: `Last message: ${activityText(r.lastActivity).long}` },
              activityText(r.lastActivity).short,
            )
          : null,
        size === null ? null : el('span', { className: 'room-count', title: plural(size, 'member') }, String(size)),
      );
      button.addEventListener('click', () => onPick(r.name));
      return el('li', {}, button);
    }),
  );
  empty.hidden = rooms.length > 0;
  return rooms.reduce((sum, r) => sum + r.unread, 0);
}

/** When a room was last written in: the time today, else the date. */
function activityText(iso) {
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return { short: '', long: '' };
  const today = at.toDateString() === new Date().toDateString();
  return {
    short: today
      ? at.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
      : at.toLocaleDateString([], { month: 'short', day: 'numeric' }),
    long: formatTime(iso).long,
  };
}

/** Draws the members of the open room (`me` marked), and how many more
 * there are beyond those listed. */
export function renderMembers(list, members, me, unlisted = 0) {
  list.replaceChildren(
    ...members.map((name) =>
      el(
        'li',
        { className: name === me ? 'member me' : 'member' },
        avatar(name),
        el('bdi', {}, name),
        name === me ? el('span', { className: 'you' }, '(you)') : null,
      ),
    ),
    ...(unlisted > 0 ? [el('li', { className: 'member more' }, `and ${unlisted} more`)] : []),
  );
}
