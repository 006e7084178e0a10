// JSON on the wire (docs/protocol.md sections 2 to 5): the serializer and the exact shapes of
// the HTTP bodies and of the frames' payloads. Nothing here knows what the fields mean; the
// typed events built from them are in Events.cs.

using System.IO;
using System.Runtime.Serialization;
using System.Runtime.Serialization.Json;

namespace Chat.Client
{
    /// <summary>UTF-8 JSON with DataContractJsonSerializer, the one serializer both Mono and
    /// modern .NET ship (see README.md, "Why DataContractJsonSerializer").</summary>
    internal static class Json
    {
        static readonly DataContractJsonSerializerSettings Settings = new DataContractJsonSerializerSettings
        {
            UseSimpleDictionaryFormat = true,
        };

        public static byte[] Write<T>(T value)
        {
            var serializer = new DataContractJsonSerializer(typeof(T), Settings);
            using (var stream = new MemoryStream())
            {
                serializer.WriteObject(stream, value); // UTF-8, non-ASCII written as is
                return stream.ToArray();
            }
        }

        public static T Read<T>(byte[] utf8, int count)
        {
            var serializer = new DataContractJsonSerializer(typeof(T), Settings);
            using (var stream = new MemoryStream(utf8, 0, count, false))
            {
                return (T)serializer.ReadObject(stream);
            }
        }

        public static T Read<T>(byte[] utf8)
        {
            return Read<T>(utf8, utf8.Length);
        }
    }

    // ---------------------------------------------------------------- HTTP bodies (section 2)

    [DataContract]
    internal sealed class LoginRequest
    {
        [DataMember(Name = "username", Order = 1)] public string Username;
        [DataMember(Name = "password", Order = 2)] public string Password;
    }

    /// <summary>The answer to <c>POST /api/login</c>, and (without the session) to <c>POST /api/ticket</c>.</summary>
    [DataContract]
    internal sealed class TicketResponse
    {
        [DataMember(Name = "ticket")] public string Ticket;
        [DataMember(Name = "expires_in")] public long ExpiresIn;
        /// <summary>Only in a login's answer; null from a server older than sessions.</summary>
        [DataMember(Name = "session")] public string Session;
        [DataMember(Name = "session_expires_in")] public long SessionExpiresIn;
    }

    [DataContract]
    internal sealed class ErrorBody
    {
        [DataMember(Name = "code")] public string Code;
        [DataMember(Name = "message")] public string Message;
    }

    // ---------------------------------------------------------------- frames (section 3)

    /// <summary>Only the <c>type</c> and <c>ref</c> of a frame; the payload is read in a second
    /// pass, as the type it names.</summary>
    [DataContract]
    internal sealed class FrameHead
    {
        [DataMember(Name = "type")] public string Type;
        [DataMember(Name = "ref")] public string Ref;
    }

    [DataContract]
    internal sealed class Frame<T> where T : class
    {
        [DataMember(Name = "type", Order = 1)] public string Type;
        [DataMember(Name = "payload", Order = 2, EmitDefaultValue = false)] public T Payload;
        [DataMember(Name = "ref", Order = 3, EmitDefaultValue = false)] public string Ref;
    }

    // ---------------------------------------------------------------- client payloads (section 4)

    [DataContract]
    internal sealed class JoinRoomPayload
    {
        [DataMember(Name = "room", Order = 1)] public string Room;
        [DataMember(Name = "since", Order = 2, EmitDefaultValue = false)] public long? Since;
        [DataMember(Name = "epoch", Order = 3, EmitDefaultValue = false)] public string Epoch;
    }

    [DataContract] internal sealed class RoomPayload { [DataMember(Name = "room")] public string Room; }

    [DataContract]
    internal sealed class SendMessagePayload
    {
        [DataMember(Name = "room", Order = 1)] public string Room;
        [DataMember(Name = "text", Order = 2)] public string Text;
        [DataMember(Name = "client_id", Order = 3, EmitDefaultValue = false)] public string ClientId;
    }

    [DataContract]
    internal sealed class HistoryPayload
    {
        [DataMember(Name = "room", Order = 1)] public string Room;
        [DataMember(Name = "before", Order = 2, EmitDefaultValue = false)] public long? Before;
        [DataMember(Name = "limit", Order = 3, EmitDefaultValue = false)] public int? Limit;
    }

    [DataContract]
    internal sealed class ListRoomsPayload
    {
        [DataMember(Name = "after", Order = 1, EmitDefaultValue = false)] public string After;
        [DataMember(Name = "limit", Order = 2, EmitDefaultValue = false)] public int? Limit;
    }

    // ---------------------------------------------------------------- server payloads (section 5)

    [DataContract]
    internal sealed class WelcomePayload
    {
        [DataMember(Name = "protocol_version")] public int ProtocolVersion;
        [DataMember(Name = "server")] public string Server;
        [DataMember(Name = "user")] public string User;
        [DataMember(Name = "limits")] public Limits Limits;
    }

    /// <summary>The limits announced in <c>welcome</c>; the defaults are the server's.</summary>
    [DataContract]
    public sealed class Limits
    {
        [DataMember(Name = "max_message_bytes")] public long MaxMessageBytes = 65536;
        [DataMember(Name = "max_rooms")] public int MaxRooms = 32;
        [DataMember(Name = "messages_per_second")] public double MessagesPerSecond = 5;
        [DataMember(Name = "message_burst")] public int MessageBurst = 20;
        [DataMember(Name = "ping_interval_ms")] public long PingIntervalMs = 20000;
        [DataMember(Name = "pong_timeout_ms")] public long PongTimeoutMs = 10000;
    }

    [DataContract]
    internal sealed class JoinedPayload
    {
        [DataMember(Name = "room")] public string Room;
        [DataMember(Name = "members")] public string[] Members;
        [DataMember(Name = "members_total")] public int? MembersTotal;
        [DataMember(Name = "last_seq")] public long LastSeq;
        [DataMember(Name = "history")] public ChatMessage[] History;
        [DataMember(Name = "epoch")] public string Epoch;
    }

    [DataContract]
    internal sealed class AckPayload
    {
        [DataMember(Name = "room")] public string Room;
        [DataMember(Name = "seq")] public long Seq;
        [DataMember(Name = "id")] public string Id;
        [DataMember(Name = "client_id")] public string ClientId;
    }

    [DataContract]
    internal sealed class HistoryPagePayload
    {
        [DataMember(Name = "room")] public string Room;
        [DataMember(Name = "messages")] public ChatMessage[] Messages;
        [DataMember(Name = "first_seq")] public long? FirstSeq;
    }

    [DataContract]
    internal sealed class HistoryGapPayload
    {
        [DataMember(Name = "room")] public string Room;
        [DataMember(Name = "from")] public long From;
        [DataMember(Name = "to")] public long To;
    }

    [DataContract]
    internal sealed class MemberPayload
    {
        [DataMember(Name = "room")] public string Room;
        [DataMember(Name = "user")] public string User;
    }

    [DataContract]
    internal sealed class RoomListPayload
    {
        [DataMember(Name = "rooms")] public RoomInfo[] Rooms;
        [DataMember(Name = "next")] public string Next;
    }

    /// <summary>One room of a <c>room_list</c>.</summary>
    [DataContract]
    public sealed class RoomInfo
    {
        [DataMember(Name = "name")] public string Name;
        [DataMember(Name = "members")] public int Members;
        [DataMember(Name = "last_seq")] public long LastSeq;
    }

    /// <summary>A stored message: a <c>new_message</c> payload, and an entry of a
    /// <c>joined</c> history or a <c>history_page</c>.</summary>
    [DataContract]
    public sealed class ChatMessage
    {
        /// <summary>Opaque, unique on the server; compare only for equality.</summary>
        [DataMember(Name = "id")] public string Id;
        [DataMember(Name = "room")] public string Room;
        /// <summary>The message's place in its room: 1, 2, 3, ... within one epoch.</summary>
        [DataMember(Name = "seq")] public long Seq;
        [DataMember(Name = "from")] public string From;
        [DataMember(Name = "text")] public string Text;
        /// <summary>RFC 3339, UTC, with milliseconds and Z; kept as the server sent it.</summary>
        [DataMember(Name = "sent_at")] public string SentAt;
    }
}
