// The server's events (docs/protocol.md section 5) as typed objects, and the parser that
// turns one received text message into one of them.

using System.IO;

namespace Chat.Client
{
    /// <summary>Something that happened, in the order it happened: an event from the server,
    /// or (SessionEvents.cs) something the session concluded from them.</summary>
    public abstract class ChatEvent
    {
        /// <summary>The <c>type</c> of the frame, e.g. <c>joined</c>.</summary>
        public abstract string Type { get; }

        /// <summary>The request this event answers, found by the <c>ref</c> the server copied
        /// onto it; null for events that answer nobody (<c>new_message</c>, ...).</summary>
        public Request Request { get; internal set; }

        /// <summary>The <c>ref</c> as received, until the connection has matched it.</summary>
        internal string Ref;
    }

    public sealed class Welcome : ChatEvent
    {
        public override string Type { get { return "welcome"; } }
        public int ProtocolVersion;
        public string Server;
        public string User;
        public Limits Limits;
    }

    public sealed class Joined : ChatEvent
    {
        public override string Type { get { return "joined"; } }
        public string Room;
        /// <summary>The members; in a room too big for one frame, the first by name.</summary>
        public string[] Members;
        /// <summary>How many members the room has, counting those <see cref="Members"/> leaves out.</summary>
        public int MembersTotal;
        /// <summary>The room's newest seq when it was joined (0: no message yet).</summary>
        public long LastSeq;
        /// <summary>After a plain join the recent messages, oldest first; after a resume empty.</summary>
        public ChatMessage[] History;
        /// <summary>Names the history the seqs belong to; a new one means a new history.</summary>
        public string Epoch;
    }

    /// <summary>A <c>send_message</c> was stored as message <see cref="Seq"/>.</summary>
    public sealed class Ack : ChatEvent
    {
        public override string Type { get { return "ack"; } }
        public string Room;
        public long Seq;
        public string Id;
        /// <summary>The client_id sent with the message (null if none was).</summary>
        public string ClientId;
    }

    /// <summary>The answer to <c>history</c>: older messages, oldest first.</summary>
    public sealed class HistoryPage : ChatEvent
    {
        public override string Type { get { return "history_page"; } }
        public string Room;
        public ChatMessage[] Messages;
        /// <summary>The oldest seq the server still stores for the room; null: none.</summary>
        public long? FirstSeq;
    }

    /// <summary>During a resume: messages From..To (inclusive) are no longer stored.</summary>
    public sealed class HistoryGap : ChatEvent
    {
        public override string Type { get { return "history_gap"; } }
        public string Room;
        public long From;
        public long To;
    }

    public sealed class Left : ChatEvent
    {
        public override string Type { get { return "left"; } }
        public string Room;
    }

    public sealed class MemberJoined : ChatEvent
    {
        public override string Type { get { return "member_joined"; } }
        public string Room;
        public string User;
    }

    public sealed class MemberLeft : ChatEvent
    {
        public override string Type { get { return "member_left"; } }
        public string Room;
        public string User;
    }

    public sealed class NewMessage : ChatEvent
    {
        public override string Type { get { return "new_message"; } }
        public ChatMessage Message;
    }

    public sealed class RoomList : ChatEvent
    {
        public override string Type { get { return "room_list"; } }
        public RoomInfo[] Rooms;
        /// <summary>Where the next page starts (pass it as <c>after</c>); null on the last page.</summary>
        public string Next;
    }

    /// <summary>An <c>error</c> event: a request failed and had no effect; the connection
    /// stays open. <see cref="ChatEvent.Request"/> says which request.</summary>
    public sealed class ServerError : ChatEvent
    {
        public override string Type { get { return "error"; } }
        public string Code;
        public string Message;
    }

    /// <summary>An event type this client does not know; the protocol says to ignore it.</summary>
    public sealed class UnknownEvent : ChatEvent
    {
        private readonly string type;
        public UnknownEvent(string type) { this.type = type; }
        public override string Type { get { return type; } }
    }

    /// <summary>Turns one received text message into a typed event.</summary>
    internal static class EventParser
    {
        /// <summary>Parses <paramref name="count"/> bytes of UTF-8 JSON. Throws
        /// SerializationException for text that is not JSON, InvalidDataException for a
        /// known event without its payload.</summary>
        public static ChatEvent Parse(byte[] utf8, int count)
        {
            FrameHead head = Json.Read<FrameHead>(utf8, count);
            ChatEvent parsed = Typed(head.Type, utf8, count);
            parsed.Ref = head.Ref;
            return parsed;
        }

        static ChatEvent Typed(string type, byte[] utf8, int count)
        {
            switch (type)
            {
                case "welcome":
                {
                    var p = Payload<WelcomePayload>(utf8, count);
                    return new Welcome { ProtocolVersion = p.ProtocolVersion, Server = p.Server, User = p.User, Limits = p.Limits ?? new Limits() };
                }
                case "joined":
                {
                    var p = Payload<JoinedPayload>(utf8, count);
                    return new Joined
                    {
                        Room = p.Room,
                        Members = p.Members ?? new string[0],
                        MembersTotal = p.MembersTotal ?? (p.Members ?? new string[0]).Length,
                        LastSeq = p.LastSeq,
                        History = p.History ?? new ChatMessage[0],
                        Epoch = p.Epoch ?? "",
                    };
                }
                case "ack":
                {
                    var p = Payload<AckPayload>(utf8, count);
                    return new Ack { Room = p.Room, Seq = p.Seq, Id = p.Id, ClientId = p.ClientId };
                }
                case "history_page":
                {
                    var p = Payload<HistoryPagePayload>(utf8, count);
                    return new HistoryPage { Room = p.Room, Messages = p.Messages ?? new ChatMessage[0], FirstSeq = p.FirstSeq };
                }
                case "history_gap":
                {
                    var p = Payload<HistoryGapPayload>(utf8, count);
                    return new HistoryGap { Room = p.Room, From = p.From, To = p.To };
                }
                case "left":
                    return new Left { Room = Payload<RoomPayload>(utf8, count).Room };
                case "member_joined":
                {
                    var p = Payload<MemberPayload>(utf8, count);
                    return new MemberJoined { Room = p.Room, User = p.User };
                }
                case "member_left":
                {
                    var p = Payload<MemberPayload>(utf8, count);
                    return new MemberLeft { Room = p.Room, User = p.User };
                }
                case "new_message":
                    return new NewMessage { Message = Payload<ChatMessage>(utf8, count) };
                case "room_list":
                {
                    var list = Payload<RoomListPayload>(utf8, count);
                    return new RoomList { Rooms = list.Rooms ?? new RoomInfo[0], Next = list.Next };
                }
                case "error":
                {
                    var p = Payload<ErrorBody>(utf8, count);
                    return new ServerError { Code = p.Code, Message = p.Message };
                }
                default:
                    return new UnknownEvent(type ?? ""); // section 3: ignore unknown types
            }
        }

        static T Payload<T>(byte[] utf8, int count) where T : class
        {
            T payload = Json.Read<Frame<T>>(utf8, count).Payload;
            if (payload == null) throw new InvalidDataException("event without payload");
            return payload;
        }
    }
}
