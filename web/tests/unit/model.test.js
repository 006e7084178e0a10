// The model of rooms and messages (model.js), fed server events as
// docs/protocol.md describes them: no browser, no server, no timers.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ChatModel, MAX_DIRECTORY, MAX_KEPT, PAGE_SIZE, RESET_NOTICE } from '../../model.js';

const EPOCH = 'e-one';

function message(seq, from = 'bob', room = 'general') {
  return { id: `id${seq}`, room, seq, from, text: `text ${seq}`, sent_at: '2026-11-24T09:30:00.123Z' };
}

/** The only frame of `fx`, checked to be of `type`. */
function only(fx, type) {
  assert.equal(fx.send.length, 1, `one frame expected, got ${JSON.stringify(fx.send)}`);
  assert.equal(fx.send[0].type, type);
  return fx.send[0];
}

/** A model signed in as alice, in `room` by a plain join with `history`. */
function joinedModel({ room = 'general', history = [], lastSeq = history.at(-1)?.seq ?? 0, epoch = EPOCH } = {}) {
  const model = new ChatModel();
  model.welcome('alice');
  const join = only(model.join(room), 'join_room');
  model.receive({ type: 'joined', ref: join.ref, payload: { room, members: ['bob', 'alice'], last_seq: lastSeq, history, epoch } });
  return model;
}

/** Drops the connection and accepts a new one: the frames the model sends. */
function reconnect(model) {
  model.lost('test');
  return model.welcome('alice').send;
}

const seqs = (model, room = 'general') => model.held(room).map((m) => m.seq);

describe('joining', () => {
  test('a joined that lists only the first members counts the rest', () => {
    const model = new ChatModel();
    model.welcome('alice');
    const join = only(model.join('big'), 'join_room');
    model.receive({ type: 'joined', ref: join.ref, payload: { room: 'big', members: ['alice', 'bob'], members_total: 500, last_seq: 0, history: [], epoch: EPOCH } });
    const r = model.rooms.get('big');
    assert.deepEqual(r.members, ['alice', 'bob']);
    assert.equal(r.unlisted, 498);
    assert.equal(r.size, 500);
    const small = only(model.join('small'), 'join_room');
    model.receive({ type: 'joined', ref: small.ref, payload: { room: 'small', members: ['alice'], last_seq: 0, history: [], epoch: EPOCH } });
    assert.equal(model.rooms.get('small').size, 1, 'no members_total: all are listed');
  });

  test('a plain join holds the history it brings, names every request with a distinct ref, and opens the room', () => {
    const model = new ChatModel();
    model.welcome('alice');
    const join = only(model.join('general'), 'join_room');
    assert.deepEqual(join.payload, { room: 'general' });
    assert.equal(typeof join.ref, 'string');
    assert.equal(model.current, null, 'opened only once joined');

    const fx = model.receive({
      type: 'joined',
      ref: join.ref,
      payload: { room: 'general', members: ['bob', 'alice', 'bob'], last_seq: 3, history: [message(2), message(3)], epoch: EPOCH },
    });
    assert.equal(fx.focusComposer, true, 'a join the user asked for leads to the composer');
    assert.equal(model.current, 'general');
    const r = model.rooms.get('general');
    assert.deepEqual(r.members, ['alice', 'bob']);
    assert.deepEqual(seqs(model), [2, 3]);
    assert.equal(r.lastSeq, 3);
    assert.equal(r.epoch, EPOCH);
    assert.equal(r.hasOlder, true, 'message 1 is older than the history');
    assert.equal(r.unread, 0, 'scrollback is not unread');
    assert.equal(model.unanswered, 0);

    const refs = [model.listRooms(), model.loadOlder('general'), model.send('general', 'hi', 'c1')].map((f) => only(f, f.send[0].type).ref);
    assert.equal(new Set([join.ref, ...refs]).size, 4, 'refs repeat');
  });

  test('after a reconnect each joined room resumes with since and epoch, the open one first', () => {
    const model = joinedModel({ history: [message(1), message(2)] });
    const other = only(model.join('side'), 'join_room');
    model.receive({ type: 'joined', ref: other.ref, payload: { room: 'side', members: ['alice'], last_seq: 0, history: [], epoch: EPOCH } });
    model.open('side');

    const frames = reconnect(model);
    assert.deepEqual(
      frames.map((f) => f.payload),
      [{ room: 'side' }, { room: 'general', since: 2, epoch: EPOCH }],
      'side never received a message: a plain join',
    );
    const resume = frames[1];
    // The catch-up comes first, then `joined` with an empty history.
    model.receive({ type: 'new_message', payload: message(3) });
    model.receive({ type: 'new_message', payload: message(4) });
    assert.equal(model.rooms.get('general').resuming, true);
    model.receive({ type: 'joined', ref: resume.ref, payload: { room: 'general', members: ['alice', 'bob'], last_seq: 4, history: [], epoch: EPOCH } });
    const r = model.rooms.get('general');
    assert.deepEqual(seqs(model), [1, 2, 3, 4]);
    assert.equal(r.live, true);
    assert.equal(r.resuming, false);
    assert.equal(r.unread, 2, 'caught up while another room was open');
    assert.ok(!model.rooms.get('general').entries.some((e) => e.kind === 'notice' && e.text === RESET_NOTICE));
  });

  test('a reload takes back the saved rooms and resumes them, then asks for what came before', () => {
    const before = joinedModel({ history: [message(5), message(6)] });
    const saved = JSON.parse(JSON.stringify(before.snapshot()));
    assert.deepEqual(saved, { rooms: [{ name: 'general', lastSeq: 6, epoch: EPOCH }], current: 'general' });

    const model = new ChatModel();
    model.restore(saved);
    model.restore({ rooms: [{ name: '' }, null, { name: 42 }] }); // ignored, not thrown
    assert.equal(model.current, 'general');
    const [resume] = model.welcome('alice').send;
    assert.deepEqual(resume.payload, { room: 'general', since: 6, epoch: EPOCH });
    model.receive({ type: 'new_message', payload: message(7) });
    const fx = model.receive({ type: 'joined', ref: resume.ref, payload: { room: 'general', members: ['alice'], last_seq: 7, history: [], epoch: EPOCH } });
    assert.deepEqual(only(fx, 'history').payload, { room: 'general', before: 7, limit: PAGE_SIZE });
    assert.equal(model.rooms.get('general').marker.count, 1, 'what came since the reload is marked as new');
  });
});

describe('a reload with a message not yet acknowledged', () => {
  test('the message is saved with its client_id and resent once its room is rejoined', () => {
    const before = joinedModel({ history: [message(1)] });
    const [send] = before.send('general', 'typed before the reload', 'c-r1').send;
    assert.equal(send.payload.client_id, 'c-r1');
    // The reload comes before the ack.
    const saved = JSON.parse(JSON.stringify(before.snapshot()));
    assert.deepEqual(saved.rooms[0].unsent, [{ clientId: 'c-r1', text: 'typed before the reload' }]);

    const model = new ChatModel();
    model.restore(saved);
    model.restore({ rooms: [{ name: 'general', unsent: [{ clientId: '', text: 'x' }, { clientId: 'c-r1', text: 'twice' }, null] }] });
    const [resume] = model.welcome('alice').send;
    const fx = model.receive({ type: 'joined', ref: resume.ref, payload: { room: 'general', members: ['alice'], last_seq: 1, history: [], epoch: EPOCH } });
    const resends = fx.send.filter((f) => f.type === 'send_message');
    assert.deepEqual(
      resends.map((f) => [f.payload.client_id, f.payload.text]),
      [['c-r1', 'typed before the reload']],
      'resent once, with the same client_id; malformed and repeated entries are ignored',
    );
    model.receive({ type: 'ack', ref: resends[0].ref, payload: { room: 'general', seq: 2, id: 'id2', client_id: 'c-r1' } });
    model.receive({ type: 'new_message', payload: { ...message(2, 'alice'), text: 'typed before the reload' } });
    assert.deepEqual(model.held('general'), [{ seq: 2, from: 'alice', text: 'typed before the reload' }]);
    assert.equal(model.snapshot().rooms[0].unsent, undefined, 'nothing left to save once acknowledged');
  });
});

describe('new messages', () => {
  test('a repeated or out-of-order new_message is dropped; others are held once, in order', () => {
    const model = joinedModel({ history: [message(1)] });
    for (const seq of [2, 3, 3, 2, 1, 5, 4]) model.receive({ type: 'new_message', payload: message(seq) });
    assert.deepEqual(seqs(model), [1, 2, 3, 5]);
    // Malformed ones and other rooms' never land here.
    model.receive({ type: 'new_message', payload: { ...message(6), seq: 'six' } });
    model.receive({ type: 'new_message', payload: message(7, 'bob', 'elsewhere') });
    model.receive({ type: 'new_message' });
    assert.deepEqual(seqs(model), [1, 2, 3, 5]);
  });

  test('messages of a room not open count as unread; opening it marks where they begin', () => {
    const model = joinedModel();
    const side = only(model.join('side'), 'join_room');
    model.receive({ type: 'joined', ref: side.ref, payload: { room: 'side', members: ['alice'], last_seq: 0, history: [], epoch: EPOCH } });
    model.open('side');
    model.receive({ type: 'new_message', payload: message(1, 'alice') });
    model.receive({ type: 'new_message', payload: message(2) });
    model.receive({ type: 'new_message', payload: message(3) });
    const r = model.rooms.get('general');
    assert.equal(r.unread, 2, 'our own message is not unread');
    model.open('general');
    assert.equal(r.unread, 0);
    assert.deepEqual(r.marker, { beforeKey: r.messages[1].key, count: 2 });
  });

  test('the oldest entries go beyond the limit, and can be loaded again', () => {
    const model = new ChatModel({ maxKept: 5 });
    model.welcome('alice');
    const join = only(model.join('general'), 'join_room');
    model.receive({ type: 'joined', ref: join.ref, payload: { room: 'general', members: ['alice'], last_seq: 0, history: [], epoch: EPOCH } });
    for (let seq = 1; seq <= 8; seq += 1) model.receive({ type: 'new_message', payload: message(seq) });
    assert.deepEqual(seqs(model), [4, 5, 6, 7, 8]);
    assert.equal(model.rooms.get('general').hasOlder, true);
    assert.equal(only(model.loadOlder('general'), 'history').payload.before, 4);
    assert.ok(MAX_KEPT >= 500);
  });
});

describe('sending', () => {
  test('an ack is matched by client_id; the message is held when its copy arrives, not before', () => {
    const model = joinedModel({ history: [message(1)] });
    const send = only(model.send('general', 'hello', 'c-1'), 'send_message');
    assert.deepEqual(send.payload, { room: 'general', text: 'hello', client_id: 'c-1' });
    const r = model.rooms.get('general');
    assert.equal(r.outbox[0].status, 'sending');
    assert.deepEqual(seqs(model), [1], 'pending is not held');

    model.receive({ type: 'ack', ref: send.ref, payload: { room: 'general', seq: 2, id: 'id2', client_id: 'c-1' } });
    assert.equal(r.outbox[0].status, 'sent');
    assert.equal(r.outbox[0].seq, 2);
    model.receive({ type: 'new_message', payload: { ...message(2, 'alice'), text: 'hello' } });
    assert.deepEqual(r.outbox, []);
    assert.deepEqual(model.held('general').at(-1), { seq: 2, from: 'alice', text: 'hello' });
    assert.equal(r.unread, 0);
  });

  test('an unacked message is resent with its client_id once its room is rejoined, and held once', () => {
    const model = joinedModel({ history: [message(1)] });
    const first = only(model.send('general', 'lost ack', 'c-9'), 'send_message');
    // Stored as 2, but the connection drops before the ack comes.
    const [resume] = reconnect(model);
    assert.deepEqual(resume.payload, { room: 'general', since: 1, epoch: EPOCH });
    assert.equal(model.send('general', 'while rejoining', 'c-10').send.length, 0, 'waits for joined');
    model.receive({ type: 'new_message', payload: { ...message(2, 'alice'), text: 'lost ack' } });
    const fx = model.receive({ type: 'joined', ref: resume.ref, payload: { room: 'general', members: ['alice'], last_seq: 2, history: [], epoch: EPOCH } });
    assert.deepEqual(
      fx.send.map((f) => [f.type, f.payload.client_id, f.payload.text]),
      [
        ['send_message', 'c-9', 'lost ack'],
        ['send_message', 'c-10', 'while rejoining'],
      ],
    );
    assert.notEqual(fx.send[0].ref, first.ref);
    // The server knows c-9: the same seq, no new copy.
    model.receive({ type: 'ack', ref: fx.send[0].ref, payload: { room: 'general', seq: 2, id: 'id2', client_id: 'c-9' } });
    model.receive({ type: 'ack', ref: fx.send[1].ref, payload: { room: 'general', seq: 3, id: 'id3', client_id: 'c-10' } });
    model.receive({ type: 'new_message', payload: { ...message(3, 'alice'), text: 'while rejoining' } });
    assert.deepEqual(model.held('general'), [
      { seq: 1, from: 'bob', text: 'text 1' },
      { seq: 2, from: 'alice', text: 'lost ack' },
      { seq: 3, from: 'alice', text: 'while rejoining' },
    ]);
    assert.deepEqual(model.rooms.get('general').outbox, []);
  });

  test('an error reaches the request its ref names, whatever the order of the answers', () => {
    const model = joinedModel();
    const a = only(model.send('general', 'first', 'c-a'), 'send_message');
    const b = only(model.send('general', 'second', 'c-b'), 'send_message');
    const c = only(model.send('general', 'third', 'c-c'), 'send_message');
    // The middle one is refused; its error comes after a later answer.
    model.receive({ type: 'ack', ref: c.ref, payload: { room: 'general', seq: 2, id: 'x', client_id: 'c-c' } });
    const fx = model.receive({ type: 'error', ref: b.ref, payload: { code: 'rate_limited', message: 'slow down' } });
    assert.equal(fx.chatError, 'Not sent: You are sending too fast.');
    const status = Object.fromEntries(model.rooms.get('general').outbox.map((p) => [p.clientId, p.status]));
    assert.deepEqual(status, { 'c-a': 'sending', 'c-b': 'failed', 'c-c': 'sent' });
    assert.equal(model.rooms.get('general').outbox.find((p) => p.clientId === 'c-b').reason, 'You are sending too fast');

    // An error with a ref the model did not send (the connection's
    // keep-alive) changes nothing and says nothing.
    const other = model.receive({ type: 'error', ref: 'keepalive-3', payload: { code: 'rate_limited', message: 'x' } });
    assert.equal(other.chatError, null);
    assert.equal(model.rooms.get('general').outbox.find((p) => p.clientId === 'c-a').status, 'sending');
    // An error naming no request at all is shown.
    assert.equal(model.receive({ type: 'error', payload: { code: 'invalid_frame', message: 'bad frame' } }).chatError, 'bad frame');

    // A refused message is sent again only when the user asks, with its id.
    const again = only(model.retry('general', 'c-b'), 'send_message');
    assert.equal(again.payload.client_id, 'c-b');
    assert.notEqual(again.ref, b.ref);
    void a;
  });

  test('a refused rejoin is retried after a rate limit, and given up otherwise', () => {
    const model = joinedModel({ history: [message(1)] });
    model.send('general', 'unsent', 'c-1');
    let [resume] = reconnect(model);
    const limited = model.receive({ type: 'error', ref: resume.ref, payload: { code: 'rate_limited', message: 'x' } });
    assert.deepEqual(limited.retryJoin, ['general']);
    [resume] = model.rejoin('general').send;
    assert.equal(resume.payload.since, 1);
    const refused = model.receive({ type: 'error', ref: resume.ref, payload: { code: 'too_many_rooms', message: 'x' } });
    assert.match(refused.joinError, /as many rooms/);
    assert.deepEqual(refused.giveBack, [{ room: 'general', text: 'unsent' }]);
    assert.equal(model.rooms.get('general').joined, false);
    assert.equal(model.current, null);
  });
});

describe('epochs', () => {
  test('a joined with another epoch drops what was held, keeps unacked messages to resend, and says so', () => {
    const model = joinedModel({ history: [message(2), message(3)] });
    const acked = only(model.send('general', 'acked, never received', 'c-old'), 'send_message');
    model.receive({ type: 'ack', ref: acked.ref, payload: { room: 'general', seq: 4, id: 'id4', client_id: 'c-old' } });
    const old = only(model.loadOlder('general'), 'history');
    model.lost('restart');
    model.send('general', 'never acked', 'c-new');

    const [resume] = model.welcome('alice').send;
    assert.deepEqual(resume.payload, { room: 'general', since: 3, epoch: EPOCH });
    // The new server answers as a plain join of its own history.
    const fx = model.receive({
      type: 'joined',
      ref: resume.ref,
      payload: { room: 'general', members: ['alice'], last_seq: 2, history: [message(1, 'carol'), message(2, 'carol')], epoch: 'e-two' },
    });
    const r = model.rooms.get('general');
    assert.deepEqual(model.held('general'), [
      { seq: 1, from: 'carol', text: 'text 1' },
      { seq: 2, from: 'carol', text: 'text 2' },
    ]);
    assert.equal(r.epoch, 'e-two');
    assert.equal(r.lastSeq, 2);
    assert.equal(r.entries[0].kind, 'notice');
    assert.equal(r.entries[0].text, RESET_NOTICE);
    assert.deepEqual(
      r.outbox.map((p) => p.clientId),
      ['c-new'],
      'the acked message belonged to the old history',
    );
    assert.deepEqual(only(fx, 'send_message').payload.client_id, 'c-new');
    // No key of the new history is one of the old: nothing can be mistaken.
    assert.ok(r.entries.every((e) => !e.key.startsWith('m0:')));
    // A late answer about the old history is ignored.
    model.receive({ type: 'history_page', ref: old.ref, payload: { room: 'general', messages: [message(0)], first_seq: 1 } });
    assert.deepEqual(seqs(model), [1, 2]);
    // And the next resume names the new epoch.
    assert.deepEqual(reconnect(model)[0].payload, { room: 'general', since: 2, epoch: 'e-two' });
  });

  test('the same epoch is a resume: nothing is dropped', () => {
    const model = joinedModel({ history: [message(1)] });
    const [resume] = reconnect(model);
    model.receive({ type: 'joined', ref: resume.ref, payload: { room: 'general', members: ['alice'], last_seq: 1, history: [], epoch: EPOCH } });
    assert.deepEqual(seqs(model), [1]);
    assert.ok(!model.rooms.get('general').entries.some((e) => e.text === RESET_NOTICE));
  });

  test('without epochs, a last_seq below since means a reset too', () => {
    const model = joinedModel({ history: [message(1), message(2)], epoch: null });
    const [resume] = reconnect(model);
    assert.deepEqual(resume.payload, { room: 'general', since: 2 });
    model.receive({ type: 'joined', ref: resume.ref, payload: { room: 'general', members: ['alice'], last_seq: 0, history: [] } });
    assert.deepEqual(seqs(model), []);
    assert.equal(model.rooms.get('general').entries[0].text, RESET_NOTICE);
  });
});

describe('history', () => {
  test('pages go before the oldest held until one starts at first_seq', () => {
    const all = Array.from({ length: 120 }, (_, i) => message(i + 1));
    const model = joinedModel({ history: all.slice(100) });
    let frame = only(model.loadOlder('general'), 'history');
    assert.deepEqual(frame.payload, { room: 'general', before: 101, limit: PAGE_SIZE });
    assert.equal(model.loadOlder('general').send.length, 0, 'one request at a time');
    model.receive({ type: 'history_page', ref: frame.ref, payload: { room: 'general', messages: all.slice(50, 100), first_seq: 1 } });
    assert.deepEqual(seqs(model), all.slice(50).map((m) => m.seq));
    assert.equal(model.rooms.get('general').hasOlder, true);

    frame = only(model.loadOlder('general'), 'history');
    assert.equal(frame.payload.before, 51);
    // Overlapping and repeated messages in a page are held once.
    model.receive({ type: 'history_page', ref: frame.ref, payload: { room: 'general', messages: [...all.slice(0, 51), all[3]], first_seq: 1 } });
    assert.deepEqual(seqs(model), all.map((m) => m.seq));
    assert.equal(model.rooms.get('general').hasOlder, false, 'the page started at first_seq');
    assert.equal(model.loadOlder('general').send.length, 0);
  });

  test('a page is matched by ref only: one nobody asked for is ignored', () => {
    const model = joinedModel({ history: [message(5)] });
    model.receive({ type: 'history_page', payload: { room: 'general', messages: [message(4)], first_seq: 1 } });
    model.receive({ type: 'history_page', ref: 'r999', payload: { room: 'general', messages: [message(3)], first_seq: 1 } });
    assert.deepEqual(seqs(model), [5]);
  });

  test('a history_gap is shown where the missing messages would be, and the resume goes on after it', () => {
    const model = joinedModel({ history: [message(1)] });
    const [resume] = reconnect(model);
    model.receive({ type: 'history_gap', payload: { room: 'general', from: 2, to: 4 } });
    model.receive({ type: 'new_message', payload: message(5) });
    model.receive({ type: 'new_message', payload: message(3) }); // inside the gap: out of order
    model.receive({ type: 'joined', ref: resume.ref, payload: { room: 'general', members: ['alice'], last_seq: 5, history: [], epoch: EPOCH } });
    const r = model.rooms.get('general');
    const shape = r.entries.filter((e) => e.kind !== 'notice').map((e) => (e.kind === 'gap' ? `gap ${e.from}-${e.to}` : e.seq));
    assert.deepEqual(shape, [1, 'gap 2-4', 5]);
    assert.equal(r.lastSeq, 5);
    assert.equal(reconnect(model)[0].payload.since, 5);
  });
});

describe('leaving and the room list', () => {
  test('left forgets the room and gives unsent text back', () => {
    const model = joinedModel({ history: [message(1)] });
    const leave = only(model.leave('general'), 'leave_room');
    model.lost('x');
    model.welcome('alice');
    model.send('general', 'not yet sent', 'c-1');
    const fx = model.receive({ type: 'left', ref: leave.ref, payload: { room: 'general' } });
    assert.deepEqual(fx.giveBack, [{ room: 'general', text: 'not yet sent' }]);
    assert.equal(model.current, null);
    assert.deepEqual(seqs(model), []);
    assert.deepEqual(model.snapshot().rooms, []);
  });

  test('the room list is read page by page; its last page forgets rooms that are gone, but not ours', () => {
    const model = joinedModel();
    const room = (name, members = 0) => ({ name, members, last_seq: 3, last_activity: '2026-11-24T09:30:00.123Z' });
    const read = (pages) => {
      let ask = only(model.listRooms(), 'list_rooms');
      assert.deepEqual(ask.payload, {}, 'from the first page');
      for (const [i, [rooms, next]] of pages.entries()) {
        const fx = model.receive({ type: 'room_list', ref: ask.ref, payload: next ? { rooms, next } : { rooms } });
        if (i + 1 < pages.length) {
          ask = only(fx, 'list_rooms');
          assert.deepEqual(ask.payload, { after: next });
        } else {
          assert.deepEqual(fx.send, []);
        }
      }
    };
    read([[[room('a', 2), room('quiet')], 'quiet'], [[room('zed', 1)]]]);
    assert.equal(model.rooms.get('a').count, 2);
    assert.equal(model.rooms.get('quiet').count, 0);
    assert.equal(model.rooms.get('zed').count, 1, 'the second page counts');
    assert.equal(model.rooms.get('general').count, null);

    // While a reading is under way, no second one starts; the keep-alive's
    // one-room page (no request of the model's) updates a count and forgets nothing.
    const ask = only(model.listRooms(), 'list_rooms');
    assert.deepEqual(model.listRooms().send, [], 'one reading at a time');
    model.receive({ type: 'room_list', ref: 'keepalive-3', payload: { rooms: [room('a', 5)], next: 'a' } });
    assert.equal(model.rooms.get('a').count, 5);
    assert.equal(model.rooms.has('zed'), true);
    model.receive({ type: 'room_list', ref: ask.ref, payload: { rooms: [room('a', 5)] } });
    assert.equal(model.rooms.has('quiet'), false, 'no page listed it');
    assert.equal(model.rooms.has('zed'), false);
    assert.equal(model.rooms.has('general'), true, 'ours');

    // A lost connection or a refusal ends a reading; the next starts afresh.
    only(model.listRooms(), 'list_rooms');
    reconnect(model);
    const again = only(model.listRooms(), 'list_rooms');
    model.receive({ type: 'error', ref: again.ref, payload: { code: 'rate_limited', message: 'slow down' } });
    only(model.listRooms(), 'list_rooms');
  });

  test('the room list reading stops at MAX_DIRECTORY rooms', () => {
    const model = joinedModel();
    let ask = only(model.listRooms(), 'list_rooms');
    let pages = 0;
    for (;;) {
      const base = pages * 200;
      const rooms = Array.from({ length: 200 }, (_, i) => ({ name: `r${String(base + i).padStart(5, '0')}`, members: 1, last_seq: 0 }));
      const fx = model.receive({ type: 'room_list', ref: ask.ref, payload: { rooms, next: rooms.at(-1).name } });
      pages += 1;
      if (fx.send.length === 0) break;
      ask = only(fx, 'list_rooms');
      assert.ok(pages < 100, 'never ends');
    }
    assert.equal(pages, MAX_DIRECTORY / 200);
  });
});
