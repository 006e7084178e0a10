//! The Lua scripts that change a room's presence atomically. Each touches
//! only the room's two hashes (KEYS[1] its entries, KEYS[2] its users),
//! which share the room's hash tag, so each runs within one slot.
//!
//! Entries are `<incarnation>|<user>` fields, one per node incarnation the
//! user is in the room on; a user's count is the number of its entries.
//! Every script is idempotent per entry: adding a present entry or removing
//! an absent one changes nothing and reports nothing, which is what makes
//! two nodes reaping one dead node announce each departure once.
//!
//! Sent with `EVAL` (the body each time; Redis caches the compiled script by
//! its digest), so a Redis restarted empty needs no `SCRIPT LOAD`.

/// ARGV: incarnation, user. Returns 1 when the user was in the room on no
/// node before (announce `member_joined`).
pub(crate) const JOIN: &str = r"
if redis.call('HSETNX', KEYS[1], ARGV[1] .. '|' .. ARGV[2], '1') == 1 then
  if redis.call('HINCRBY', KEYS[2], ARGV[2], 1) == 1 then
    return 1
  end
end
return 0
";

/// ARGV: incarnation, user. Returns 1 when it was the user's last entry in
/// the room (announce `member_left`).
pub(crate) const LEAVE: &str = r"
if redis.call('HDEL', KEYS[1], ARGV[1] .. '|' .. ARGV[2]) == 1 then
  if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then
    redis.call('HDEL', KEYS[2], ARGV[2])
    return 1
  end
end
return 0
";

/// ARGV: incarnation. Removes every entry of the incarnation in the room;
/// returns the users who thereby left the room everywhere. Reads every
/// entry of the room: a dead node is reaped rarely.
pub(crate) const REAP: &str = r"
local mine = ARGV[1] .. '|'
local gone = {}
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 1, #mine) == mine then
    redis.call('HDEL', KEYS[1], field)
    local user = string.sub(field, #mine + 1)
    if redis.call('HINCRBY', KEYS[2], user, -1) <= 0 then
      redis.call('HDEL', KEYS[2], user)
      table.insert(gone, user)
    end
  end
end
return gone
";

/// `EVAL script` on the room's two hashes with `args`.
pub(crate) fn eval(script: &str, entries: &str, users: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(2).arg(entries).arg(users);
    cmd
}
