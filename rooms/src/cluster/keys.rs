//! Names of every Redis key and channel the cluster uses, in one place.
//!
//! Everything of one room carries the room as its hash tag (`{<room>}`):
//! its channel and its two presence hashes map to one Redis Cluster slot,
//! so the presence scripts touch a single slot and a channel is served by
//! the shard that holds the room's keys. The per-node keys have no hash
//! tag; each is used by single-key commands only.

/// Key and channel names under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    /// Names under `prefix`, which must not contain braces (it would
    /// change the hash tag); checked by the caller.
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The room's sharded pub/sub channel.
    pub(crate) fn channel(&self, room: &str) -> String {
        format!("{}:room:{{{room}}}", self.prefix)
    }

    /// The room named by one of [`Keys::channel`]'s names.
    pub(crate) fn room_of<'a>(&self, channel: &'a [u8]) -> Option<&'a str> {
        let channel = std::str::from_utf8(channel).ok()?;
        channel
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(":room:{")?
            .strip_suffix('}')
    }

    /// The room's hash of entries: field `<incarnation>|<user>`, one per
    /// node incarnation with the user in the room.
    pub(crate) fn entries(&self, room: &str) -> String {
        format!("{}:presence:{{{room}}}:n", self.prefix)
    }

    /// The room's hash of users: field user, value the number of node
    /// incarnations the user is in the room on.
    pub(crate) fn users(&self, room: &str) -> String {
        format!("{}:presence:{{{room}}}:u", self.prefix)
    }

    /// The rooms one node incarnation has entries in (a set).
    pub(crate) fn rooms_of(&self, incarnation: &str) -> String {
        format!("{}:rooms:{incarnation}", self.prefix)
    }

    /// One node incarnation's heartbeat: exists while it is alive.
    pub(crate) fn heartbeat(&self, incarnation: &str) -> String {
        format!("{}:node:{incarnation}", self.prefix)
    }

    /// Every registered node incarnation (a hash: incarnation -> node id).
    pub(crate) fn registry(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// Left for a while by whoever reaped an incarnation: tells the
    /// incarnation, should it come back, that its users were announced gone.
    pub(crate) fn tombstone(&self, incarnation: &str) -> String {
        format!("{}:reaped:{incarnation}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_names_its_room_back() {
        let keys = Keys::new("chat");
        let channel = keys.channel("a{b}c");
        assert_eq!(channel, "chat:room:{a{b}c}");
        assert_eq!(keys.room_of(channel.as_bytes()), Some("a{b}c"));
        assert_eq!(keys.room_of(b"other:room:{x}"), None);
        assert_eq!(keys.room_of(b"chat:room:{x"), None);
    }

    #[test]
    fn a_rooms_keys_share_its_hash_tag() {
        let keys = Keys::new("chat");
        for key in [keys.channel("r"), keys.entries("r"), keys.users("r")] {
            assert!(key.contains("{r}"), "{key}");
        }
    }
}
