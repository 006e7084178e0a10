// Messages this client sent and has not yet seen through (docs/protocol.md sections 4 and 11):
// each has a random client_id, so that one whose ack was lost with its connection can be sent
// again after the reconnect, and the server stores it once. A message is done when its ack
// named its seq and the room holds that seq, in either order: after a reconnect the resumed
// backlog brings it before the resend's ack does. Own messages are recognised that way, by
// ack and seq, never by their text.

using System;
using System.Collections.Generic;

namespace Chat.Client
{
    /// <summary>A message this client sent.</summary>
    public sealed class OutgoingMessage
    {
        public readonly string Room;
        public readonly string Text;
        /// <summary>Random, the same on every resend.</summary>
        public readonly string ClientId;
        /// <summary>The seq its ack named; null until acked.</summary>
        public long? Seq { get; internal set; }

        internal OutgoingMessage(string room, string text, string clientId)
        {
            Room = room;
            Text = text;
            ClientId = clientId;
        }
    }

    /// <summary>The messages sent and not yet done, in the order they were sent. Not
    /// thread-safe: the session locks around it.</summary>
    internal sealed class Outbox
    {
        readonly List<OutgoingMessage> entries = new List<OutgoingMessage>();

        /// <summary>How many the server refused (rate_limited, ...): not delivered, not retried.</summary>
        public int Refused { get; private set; }

        public int Count { get { return entries.Count; } }

        public OutgoingMessage Add(string room, string text)
        {
            // 32 hex digits of a random (version 4) GUID: unique per room and user in practice,
            // and within the 64 characters a client_id may have.
            var message = new OutgoingMessage(room, text, "c-" + Guid.NewGuid().ToString("N"));
            entries.Add(message);
            return message;
        }

        /// <summary>The room's messages without an ack yet, in order: to send (again) once
        /// the room is joined.</summary>
        public List<OutgoingMessage> Unacked(string room)
        {
            return entries.FindAll(m => m.Room == room && !m.Seq.HasValue);
        }

        /// <summary>An ack for <paramref name="clientId"/>: the message is stored as
        /// <paramref name="seq"/>; done if the room already holds it. Null for an ack of no
        /// message here (a message acked twice, or sent by another program).</summary>
        public OutgoingMessage Acked(string clientId, long seq, bool held)
        {
            OutgoingMessage message = entries.Find(m => m.ClientId == clientId);
            if (message == null) return null;
            message.Seq = seq;
            if (held) entries.Remove(message);
            return message;
        }

        /// <summary>The room now holds message <paramref name="seq"/>: if it is one of ours, it
        /// is done. Returns it, or null.</summary>
        public OutgoingMessage Seen(string room, long seq)
        {
            OutgoingMessage message = entries.Find(m => m.Room == room && m.Seq == seq);
            if (message != null) entries.Remove(message);
            return message;
        }

        /// <summary>The server refused the message: it was not stored, and is dropped.</summary>
        public void Refuse(string clientId)
        {
            if (entries.RemoveAll(m => m.ClientId == clientId) > 0) Refused++;
        }

        /// <summary>The room's history was replaced (a new epoch): acked messages whose copy had
        /// not arrived belong to the old one and will never come; unacked ones stay, to be sent
        /// into the new history.</summary>
        public void ForgetAcked(string room)
        {
            entries.RemoveAll(m => m.Room == room && m.Seq.HasValue);
        }

        /// <summary>The room was left or refused: its messages cannot be sent.</summary>
        public void DropRoom(string room)
        {
            Refused += entries.RemoveAll(m => m.Room == room);
        }
    }
}
