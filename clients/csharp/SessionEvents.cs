// Events the session derives from the connection and from what it holds, delivered in the
// same stream as the server's own events (Events.cs).

using System;

namespace Chat.Client
{
    /// <summary>A ticket was obtained, about to open a socket.</summary>
    public sealed class LoggedIn : ChatEvent
    {
        public override string Type { get { return "login"; } }
        public TicketSource Source;
    }

    /// <summary>A message the session now holds, shown once: from a joined's history, a
    /// resume's backlog, a live new_message or a history page.</summary>
    public sealed class MessageHeld : ChatEvent
    {
        public override string Type { get { return "message"; } }
        public ChatMessage Message;
    }

    /// <summary>A resume found another history (the server's store is new): everything held
    /// of the room was dropped; the room starts again from the joined that follows.</summary>
    public sealed class EpochChanged : ChatEvent
    {
        public override string Type { get { return "epoch_changed"; } }
        public string Room;
        public string OldEpoch;
        public string NewEpoch;
    }

    /// <summary>History paging reached the room's first stored message.</summary>
    public sealed class HistoryStart : ChatEvent
    {
        public override string Type { get { return "history_start"; } }
        public string Room;
    }

    /// <summary>The connection closed: its code (1006 when dropped) and reason.</summary>
    public sealed class Closed : ChatEvent
    {
        public override string Type { get { return "closed"; } }
        public int Code;
        public string Reason;
    }

    /// <summary>The next connection attempt comes after <see cref="Delay"/>.</summary>
    public sealed class Reconnecting : ChatEvent
    {
        public override string Type { get { return "reconnecting"; } }
        public TimeSpan Delay;
        public string Why;
    }
}
