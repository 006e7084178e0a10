// What the client asks (docs/protocol.md section 4), and the table that matches each answer
// to its request by the `ref` the server copies onto it (section 3), not by counting: a
// resuming join is answered after later requests, and an error can answer any of them.

using System.Collections.Generic;

namespace Chat.Client
{
    /// <summary>One request of the client: what was asked, kept so that its answer (or its
    /// error) can be reported together with it.</summary>
    public sealed class Request
    {
        /// <summary>The event type: join_room, leave_room, send_message, history, list_rooms.</summary>
        public readonly string Type;
        /// <summary>The room it is about; null for list_rooms.</summary>
        public readonly string Room;
        /// <summary>send_message: the id that makes a resend harmless.</summary>
        public readonly string ClientId;
        /// <summary>send_message: the text.</summary>
        public readonly string Text;
        /// <summary>join_room: resume after this seq (null: a plain join).</summary>
        public readonly long? Since;
        /// <summary>join_room: the epoch the <see cref="Since"/> belongs to.</summary>
        public readonly string Epoch;
        /// <summary>history: only messages below this seq (null: the newest).</summary>
        public readonly long? Before;
        /// <summary>history, list_rooms: at most this many messages or rooms (null: the
        /// server's default).</summary>
        public readonly int? Limit;
        /// <summary>list_rooms: only rooms whose name sorts after this one, the <c>Next</c> of
        /// the previous page (null: from the first room).</summary>
        public readonly string After;

        /// <summary>The ref this request went out with; set when the connection sends it.</summary>
        public string Ref { get; internal set; }

        /// <summary>A liveness probe of the connection (section 10): its answer is not shown.</summary>
        internal bool IsProbe;

        Request(string type, string room, string clientId = null, string text = null, long? since = null,
                string epoch = null, long? before = null, int? limit = null, string after = null)
        {
            Type = type;
            Room = room;
            ClientId = clientId;
            Text = text;
            Since = since;
            Epoch = epoch;
            Before = before;
            Limit = limit;
            After = after;
        }

        /// <summary>A plain join, or with <paramref name="since"/> and <paramref name="epoch"/> a resume.</summary>
        public static Request Join(string room, long? since = null, string epoch = null)
        {
            return new Request("join_room", room, since: since, epoch: epoch);
        }

        public static Request Leave(string room)
        {
            return new Request("leave_room", room);
        }

        public static Request SendMessage(string room, string text, string clientId)
        {
            return new Request("send_message", room, clientId: clientId, text: text);
        }

        public static Request History(string room, long? before, int? limit)
        {
            return new Request("history", room, before: before, limit: limit);
        }

        /// <summary>One page of the room list (section 4): rooms after <paramref name="after"/>,
        /// at most <paramref name="limit"/>; the answer's <c>Next</c> is where the next page starts.</summary>
        public static Request ListRooms(string after = null, int? limit = null)
        {
            return new Request("list_rooms", null, after: after, limit: limit);
        }

        internal static Request Probe()
        {
            var probe = ListRooms(limit: 1);
            probe.IsProbe = true;
            return probe;
        }

        /// <summary>The frame, with <see cref="Ref"/>, as UTF-8 JSON.</summary>
        internal byte[] Encode()
        {
            switch (Type)
            {
                case "join_room":
                    return Json.Write(new Frame<JoinRoomPayload>
                    {
                        Type = Type,
                        Payload = new JoinRoomPayload { Room = Room, Since = Since, Epoch = Since.HasValue ? Epoch : null },
                        Ref = Ref,
                    });
                case "send_message":
                    return Json.Write(new Frame<SendMessagePayload>
                    {
                        Type = Type,
                        Payload = new SendMessagePayload { Room = Room, Text = Text, ClientId = ClientId },
                        Ref = Ref,
                    });
                case "history":
                    return Json.Write(new Frame<HistoryPayload>
                    {
                        Type = Type,
                        Payload = new HistoryPayload { Room = Room, Before = Before, Limit = Limit },
                        Ref = Ref,
                    });
                case "list_rooms":
                    return Json.Write(new Frame<ListRoomsPayload>
                    {
                        Type = Type,
                        Payload = new ListRoomsPayload { After = After, Limit = Limit },
                        Ref = Ref,
                    });
                default: // leave_room
                    return Json.Write(new Frame<RoomPayload> { Type = Type, Payload = new RoomPayload { Room = Room }, Ref = Ref });
            }
        }

        public override string ToString() { return Type; }
    }

    /// <summary>The requests of one connection that have not been answered yet, by ref.
    /// Refs are per connection: an answer can only come on the connection that asked.</summary>
    internal sealed class PendingRequests
    {
        readonly Dictionary<string, Request> waiting = new Dictionary<string, Request>();
        long next;

        /// <summary>Gives <paramref name="request"/> the next ref and waits for its answer.</summary>
        public void Add(Request request)
        {
            lock (waiting)
            {
                // Short and unique per connection; the protocol allows 64 characters.
                request.Ref = "r" + (++next);
                waiting[request.Ref] = request;
            }
        }

        /// <summary>The request that <paramref name="reference"/> answers, now answered; null
        /// for no ref, or one this connection never sent.</summary>
        public Request Take(string reference)
        {
            if (reference == null) return null;
            lock (waiting)
            {
                Request request;
                if (!waiting.TryGetValue(reference, out request)) return null;
                waiting.Remove(reference);
                return request;
            }
        }
    }
}
