// A client library for chat-server, written from docs/protocol.md (protocol version 1).
//
// Only platform APIs: System.Net.Http.HttpClient for the login, System.Net.WebSockets.ClientWebSocket
// for the socket, and System.Runtime.Serialization.Json.DataContractJsonSerializer for JSON. It
// compiles with Mono's mcs (C# 6) and with modern .NET; it uses no Mono-only API.
//
// Two levels:
//   ChatConnection - one login + one socket: connect, welcome check, send, receive, close.
//   ChatSession    - keeps a connection alive: reconnects with exponential backoff and jitter,
//                    a fresh ticket each time, and rejoins the rooms it was in.

using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.Http;
using System.Net.WebSockets;
using System.Runtime.Serialization;
using System.Runtime.Serialization.Json;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace Chat.Client
{
    // ---------------------------------------------------------------- wire types (section 4, 5)

    [DataContract]
    internal sealed class LoginRequest
    {
        [DataMember(Name = "username", Order = 1)] public string Username;
        [DataMember(Name = "password", Order = 2)] public string Password;
    }

    [DataContract]
    internal sealed class LoginResponse
    {
        [DataMember(Name = "ticket")] public string Ticket;
        [DataMember(Name = "expires_in")] public long ExpiresIn;
    }

    [DataContract]
    internal sealed class ErrorBody
    {
        [DataMember(Name = "code")] public string Code;
        [DataMember(Name = "message")] public string Message;
    }

    /// <summary>Only the <c>type</c> of a frame; the payload is read in a second pass.</summary>
    [DataContract]
    internal sealed class FrameHead
    {
        [DataMember(Name = "type")] public string Type;
    }

    [DataContract]
    internal sealed class Frame<T> where T : class
    {
        [DataMember(Name = "type", Order = 1)] public string Type;
        [DataMember(Name = "payload", Order = 2, EmitDefaultValue = false)] public T Payload;
    }

    [DataContract] internal sealed class RoomPayload { [DataMember(Name = "room")] public string Room; }

    [DataContract]
    internal sealed class SendMessagePayload
    {
        [DataMember(Name = "room", Order = 1)] public string Room;
        [DataMember(Name = "text", Order = 2)] public string Text;
    }

    [DataContract] internal sealed class EmptyPayload { }

    [DataContract]
    internal sealed class MembersPayload
    {
        [DataMember(Name = "room")] public string Room;
        [DataMember(Name = "members")] public string[] Members;
    }

    [DataContract]
    internal sealed class MemberPayload
    {
        [DataMember(Name = "room")] public string Room;
        [DataMember(Name = "user")] public string User;
    }

    [DataContract]
    internal sealed class RoomListPayload { [DataMember(Name = "rooms")] public RoomInfo[] Rooms; }

    /// <summary>The limits announced in <c>welcome</c>.</summary>
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
    internal sealed class WelcomePayload
    {
        [DataMember(Name = "protocol_version")] public int ProtocolVersion;
        [DataMember(Name = "server")] public string Server;
        [DataMember(Name = "user")] public string User;
        [DataMember(Name = "limits")] public Limits Limits;
    }

    [DataContract]
    public sealed class RoomInfo
    {
        [DataMember(Name = "name")] public string Name;
        [DataMember(Name = "members")] public int Members;
    }

    [DataContract]
    public sealed class ChatMessage
    {
        [DataMember(Name = "id")] public string Id;
        [DataMember(Name = "room")] public string Room;
        [DataMember(Name = "from")] public string From;
        [DataMember(Name = "text")] public string Text;
        /// <summary>RFC 3339, UTC, with milliseconds and Z; kept as the server sent it.</summary>
        [DataMember(Name = "sent_at")] public string SentAt;
    }

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

    // ---------------------------------------------------------------- typed events (section 5)

    public abstract class ChatEvent
    {
        /// <summary>The <c>type</c> of the frame, e.g. <c>new_message</c>.</summary>
        public abstract string Type { get; }
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
        public string[] Members;
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
    }

    /// <summary>An <c>error</c> event: a request failed, the connection stays open.</summary>
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

    // ---------------------------------------------------------------- failures

    /// <summary>The HTTP login (or the upgrade) was refused with a status and an error body.</summary>
    public sealed class LoginException : Exception
    {
        public readonly HttpStatusCode Status;
        public readonly string Code;
        public readonly TimeSpan? RetryAfter;

        public LoginException(HttpStatusCode status, string code, string message, TimeSpan? retryAfter)
            : base(message)
        {
            Status = status;
            Code = code;
            RetryAfter = retryAfter;
        }

        /// <summary>Trying again cannot help: wrong password, a refused request.</summary>
        public bool IsPermanent
        {
            get
            {
                return Code == "invalid_credentials" || Code == "invalid_request"
                    || Code == "origin_not_allowed" || Code == "registration_disabled"
                    || ((int)Status >= 400 && (int)Status < 500 && (int)Status != 429 && Code != "invalid_ticket");
            }
        }
    }

    /// <summary>The server speaks a protocol version this client does not.</summary>
    public sealed class ProtocolVersionException : Exception
    {
        public readonly int Version;
        public ProtocolVersionException(int version)
            : base("the server speaks protocol version " + version + "; this client speaks "
                   + ChatConnection.ProtocolVersion + ": upgrade the client")
        {
            Version = version;
        }
    }

    /// <summary>The socket is closed: by a Close frame (its code), or dropped (1006).</summary>
    public sealed class ConnectionClosedException : Exception
    {
        public readonly int Code;
        public readonly string Reason;
        public ConnectionClosedException(int code, string reason)
            : base("connection closed: " + code + (string.IsNullOrEmpty(reason) ? "" : " " + reason))
        {
            Code = code;
            Reason = reason ?? "";
        }
    }

    // ---------------------------------------------------------------- server address

    /// <summary>A server base URL: http, https, ws or wss; the other scheme is derived.</summary>
    public sealed class ServerUrl
    {
        public readonly Uri Http;   // http(s)://host:port
        public readonly Uri Ws;     // ws(s)://host:port

        public ServerUrl(string url)
        {
            Uri uri;
            if (!Uri.TryCreate(url.TrimEnd('/'), UriKind.Absolute, out uri))
                throw new ArgumentException("not a URL: " + url);
            string secure;
            switch (uri.Scheme)
            {
                case "http": case "ws": secure = ""; break;
                case "https": case "wss": secure = "s"; break;
                default: throw new ArgumentException("the server URL must start with http, https, ws or wss: " + url);
            }
            string rest = uri.GetComponents(UriComponents.HostAndPort, UriFormat.UriEscaped);
            string path = uri.AbsolutePath.TrimEnd('/');
            // A ws URL may be given with the /ws path itself.
            if ((uri.Scheme == "ws" || uri.Scheme == "wss") && path.EndsWith("/ws")) path = path.Substring(0, path.Length - 3);
            Http = new Uri("http" + secure + "://" + rest + path);
            Ws = new Uri("ws" + secure + "://" + rest + path);
        }

        public Uri LoginUri { get { return new Uri(Http.AbsoluteUri.TrimEnd('/') + "/api/login"); } }

        public Uri SocketUri(string ticket)
        {
            // The ticket is opaque: escape it rather than assume it is hex.
            return new Uri(Ws.AbsoluteUri.TrimEnd('/') + "/ws?ticket=" + Uri.EscapeDataString(ticket));
        }

        public override string ToString() { return Http.ToString(); }
    }

    // ---------------------------------------------------------------- one connection

    /// <summary>One authenticated WebSocket connection. Send from any thread (sends are
    /// serialised); receive from one loop only.</summary>
    public sealed class ChatConnection : IDisposable
    {
        public const int ProtocolVersion = 1;
        const int ChunkSize = 16 * 1024;

        static readonly HttpClient Http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };

        readonly ClientWebSocket socket;
        readonly SemaphoreSlim sendLock = new SemaphoreSlim(1, 1);
        readonly byte[] chunk = new byte[ChunkSize];
        long maxIncoming = 1024 * 1024; // until welcome tells the real limit
        DateTime lastReceived = DateTime.UtcNow;
        bool probing;
        int probesUnanswered; // room_list answers owed to our own liveness probes
        // Set once the application calls ReceiveAsync after the welcome: from then on its loop
        // is the only reader, so CloseAsync only sends and lets that loop read the reply.
        volatile bool receiving;
        readonly TaskCompletionSource<bool> closeSeen = new TaskCompletionSource<bool>();
        int closeCode;
        string closeReason;

        public Welcome Welcome { get; private set; }

        ChatConnection(ClientWebSocket socket)
        {
            this.socket = socket;
        }

        /// <summary>POST /api/login: a fresh one-time ticket.</summary>
        public static async Task<string> LoginAsync(ServerUrl server, string user, string password, CancellationToken ct)
        {
            byte[] body = Json.Write(new LoginRequest { Username = user, Password = password });
            var content = new ByteArrayContent(body);
            // Exactly application/json, as section 2 asks.
            content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
            using (var response = await Http.PostAsync(server.LoginUri, content, ct).ConfigureAwait(false))
            {
                byte[] answer = await response.Content.ReadAsByteArrayAsync().ConfigureAwait(false);
                if (response.StatusCode == HttpStatusCode.OK)
                    return Json.Read<LoginResponse>(answer).Ticket;
                throw HttpFailure(response, answer);
            }
        }

        static LoginException HttpFailure(HttpResponseMessage response, byte[] answer)
        {
            string code = "internal", message = "HTTP " + (int)response.StatusCode;
            try
            {
                var error = Json.Read<ErrorBody>(answer);
                if (error != null && error.Code != null) { code = error.Code; message = error.Message ?? message; }
            }
            catch (SerializationException) { /* not the documented body: keep the status */ }
            TimeSpan? retryAfter = null;
            var header = response.Headers.RetryAfter;
            if (header != null && header.Delta.HasValue) retryAfter = header.Delta.Value;
            return new LoginException(response.StatusCode, code, message, retryAfter);
        }

        /// <summary>Logs in, opens the socket with the ticket, reads and checks <c>welcome</c>.</summary>
        public static async Task<ChatConnection> ConnectAsync(ServerUrl server, string user, string password, CancellationToken ct)
        {
            string ticket = await LoginAsync(server, user, password, ct).ConfigureAwait(false);
            var socket = new ClientWebSocket();
            // No Origin header is sent: this is not a browser (section 2, GET /ws).
            // Pings are answered by ClientWebSocket itself while ReceiveAsync runs.
            try
            {
                await socket.ConnectAsync(server.SocketUri(ticket), ct).ConfigureAwait(false);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
            var connection = new ChatConnection(socket);
            try
            {
                ChatEvent first = await connection.ReceiveAsync(ct).ConfigureAwait(false);
                var welcome = first as Welcome;
                if (welcome == null)
                    throw new InvalidDataException("the first frame was " + first.Type + ", not welcome");
                if (welcome.ProtocolVersion != ProtocolVersion)
                {
                    await connection.CloseAsync(1000, "unsupported protocol version").ConfigureAwait(false);
                    throw new ProtocolVersionException(welcome.ProtocolVersion);
                }
                connection.Welcome = welcome;
                if (welcome.Limits != null)
                    connection.maxIncoming = welcome.Limits.MaxMessageBytes + 1024; // section 3
                return connection;
            }
            catch
            {
                connection.Dispose();
                throw;
            }
        }

        public WebSocketState State { get { return socket.State; } }

        public Task JoinAsync(string room, CancellationToken ct = default(CancellationToken))
        {
            return SendFrameAsync(new Frame<RoomPayload> { Type = "join_room", Payload = new RoomPayload { Room = room } }, ct);
        }

        public Task LeaveAsync(string room, CancellationToken ct = default(CancellationToken))
        {
            return SendFrameAsync(new Frame<RoomPayload> { Type = "leave_room", Payload = new RoomPayload { Room = room } }, ct);
        }

        public Task SendMessageAsync(string room, string text, CancellationToken ct = default(CancellationToken))
        {
            return SendFrameAsync(new Frame<SendMessagePayload>
            {
                Type = "send_message",
                Payload = new SendMessagePayload { Room = room, Text = text },
            }, ct);
        }

        public Task ListRoomsAsync(CancellationToken ct = default(CancellationToken))
        {
            return SendFrameAsync(new Frame<EmptyPayload> { Type = "list_rooms", Payload = new EmptyPayload() }, ct);
        }

        async Task SendFrameAsync<T>(Frame<T> frame, CancellationToken ct) where T : class
        {
            byte[] bytes = Json.Write(frame);
            await sendLock.WaitAsync(ct).ConfigureAwait(false);
            try
            {
                if (socket.State != WebSocketState.Open)
                    throw new ConnectionClosedException(closeCode != 0 ? closeCode : 1006, closeReason ?? "not connected");
                // One text message per event (section 3).
                await socket.SendAsync(new ArraySegment<byte>(bytes), WebSocketMessageType.Text, true, ct).ConfigureAwait(false);
            }
            catch (WebSocketException e)
            {
                throw new ConnectionClosedException(1006, e.Message);
            }
            finally
            {
                sendLock.Release();
            }
        }

        /// <summary>The next event. Throws <see cref="ConnectionClosedException"/> once the socket
        /// is closed, after finishing the close handshake. Call it in a loop, from one task,
        /// until it throws: pings are only answered while a receive is running.</summary>
        /// <remarks>Detects a dead server (section 10). ClientWebSocket answers pings but never
        /// shows them, so silence is probed with a <c>list_rooms</c> (one token): if nothing
        /// arrives for ping_interval + pong_timeout, one probe is sent; if nothing arrives for
        /// another pong_timeout, the connection is considered lost (1006).</remarks>
        public async Task<ChatEvent> ReceiveAsync(CancellationToken ct)
        {
            if (Welcome != null) receiving = true;
            return await ReceiveEventAsync(ct).ConfigureAwait(false);
        }

        async Task<ChatEvent> ReceiveEventAsync(CancellationToken ct)
        {
            var message = new MemoryStream();
            while (true)
            {
                // Never cancel ReceiveAsync itself: on .NET that aborts the socket.
                Task<WebSocketReceiveResult> receive = socket.ReceiveAsync(new ArraySegment<byte>(chunk), CancellationToken.None);
                WebSocketReceiveResult result;
                try
                {
                    result = await WithDeadServerDetection(receive, ct).ConfigureAwait(false);
                }
                catch (WebSocketException e)
                {
                    throw Closed(1006, e.Message);
                }
                catch (IOException e)
                {
                    throw Closed(1006, e.Message);
                }
                lastReceived = DateTime.UtcNow;
                probing = false;

                if (result.MessageType == WebSocketMessageType.Close)
                {
                    int code = result.CloseStatus.HasValue ? (int)result.CloseStatus.Value : 1005;
                    string reason = result.CloseStatusDescription ?? "";
                    await AnswerCloseAsync(result.CloseStatus, reason).ConfigureAwait(false);
                    throw Closed(code, reason);
                }

                message.Write(chunk, 0, result.Count);
                if (message.Length > maxIncoming)
                {
                    // Fail the connection (RFC 6455 7.1.7): send Close, do not wait for the reply.
                    await SendCloseAsync(WebSocketCloseStatus.MessageTooBig, "message too big").ConfigureAwait(false);
                    socket.Abort();
                    throw Closed(1009, "the server sent a message larger than announced");
                }
                if (!result.EndOfMessage) continue; // a fragmented message: keep assembling
                if (result.MessageType == WebSocketMessageType.Binary)
                {
                    message.SetLength(0); // section 3: binary frames are not used; ignore
                    continue;
                }
                ChatEvent parsed = Parse(message.GetBuffer(), (int)message.Length);
                if (parsed is RoomList && Interlocked.CompareExchange(ref probesUnanswered, 0, 0) > 0)
                {
                    // The answer to a liveness probe (answers come in request order): not for the caller.
                    Interlocked.Decrement(ref probesUnanswered);
                    message.SetLength(0);
                    continue;
                }
                return parsed;
            }
        }

        async Task<WebSocketReceiveResult> WithDeadServerDetection(Task<WebSocketReceiveResult> receive, CancellationToken ct)
        {
            while (true)
            {
                Limits limits = Welcome != null ? Welcome.Limits : null;
                TimeSpan quiet = TimeSpan.FromMilliseconds(limits != null ? limits.PingIntervalMs + limits.PongTimeoutMs : 30000);
                TimeSpan pong = TimeSpan.FromMilliseconds(limits != null ? limits.PongTimeoutMs : 10000);
                TimeSpan deadline = (probing ? pong : quiet) - (DateTime.UtcNow - lastReceived);
                if (deadline < TimeSpan.Zero) deadline = TimeSpan.Zero;
                var cancelled = new TaskCompletionSource<bool>();
                using (ct.Register(() => cancelled.TrySetResult(true)))
                {
                    Task done = await Task.WhenAny(receive, Task.Delay(deadline), cancelled.Task).ConfigureAwait(false);
                    if (done == receive) return await receive.ConfigureAwait(false);
                }
                if (ct.IsCancellationRequested)
                {
                    socket.Abort();
                    ct.ThrowIfCancellationRequested();
                }
                if (DateTime.UtcNow - lastReceived < (probing ? pong : quiet)) continue;
                if (probing || Welcome == null)
                {
                    socket.Abort();
                    throw Closed(1006, "the server stopped answering");
                }
                probing = true;
                lastReceived = DateTime.UtcNow;
                Interlocked.Increment(ref probesUnanswered);
                try { await ListRoomsAsync(ct).ConfigureAwait(false); }
                catch (ConnectionClosedException) { /* the receive will tell */ }
            }
        }

        static ChatEvent Parse(byte[] utf8, int count)
        {
            string type = Json.Read<FrameHead>(utf8, count).Type;
            switch (type)
            {
                case "welcome":
                {
                    var p = Payload<WelcomePayload>(utf8, count);
                    return new Welcome { ProtocolVersion = p.ProtocolVersion, Server = p.Server, User = p.User, Limits = p.Limits ?? new Limits() };
                }
                case "joined":
                {
                    var p = Payload<MembersPayload>(utf8, count);
                    return new Joined { Room = p.Room, Members = p.Members ?? new string[0] };
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
                    return new RoomList { Rooms = Payload<RoomListPayload>(utf8, count).Rooms ?? new RoomInfo[0] };
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

        ConnectionClosedException Closed(int code, string reason)
        {
            if (closeCode == 0) { closeCode = code; closeReason = reason; }
            closeSeen.TrySetResult(true);
            return new ConnectionClosedException(code, reason);
        }

        /// <summary>The server sent Close: answer it (RFC 6455 5.5.1), echoing its code.</summary>
        Task AnswerCloseAsync(WebSocketCloseStatus? status, string reason)
        {
            // A platform that already answered leaves the state at Closed; then nothing is sent.
            return SendCloseAsync(status ?? WebSocketCloseStatus.NormalClosure, reason);
        }

        /// <summary>Sends our Close frame if it has not been sent; never throws.</summary>
        async Task SendCloseAsync(WebSocketCloseStatus status, string reason)
        {
            await sendLock.WaitAsync().ConfigureAwait(false);
            try
            {
                if (socket.State == WebSocketState.Open || socket.State == WebSocketState.CloseReceived)
                {
                    using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5)))
                    {
                        await socket.CloseOutputAsync(status, reason, timeout.Token).ConfigureAwait(false);
                    }
                }
            }
            catch (OperationCanceledException) { socket.Abort(); }
            catch (WebSocketException) { /* already gone */ }
            catch (ObjectDisposedException) { }
            catch (InvalidOperationException) { }
            finally
            {
                sendLock.Release();
            }
        }

        /// <summary>Closes with the full handshake: sends Close, waits (at most 5 s) for the
        /// server's Close in reply, then the socket is closed.</summary>
        /// <remarks>If a receive loop is running, it is the one that reads the server's Close
        /// (and then ends with ConnectionClosedException carrying the echoed code): only one
        /// ReceiveAsync may run at a time on ClientWebSocket, so this method only sends.</remarks>
        public async Task CloseAsync(int code = 1000, string reason = "bye")
        {
            if (socket.State != WebSocketState.Open && socket.State != WebSocketState.CloseReceived) return;
            if (receiving)
            {
                await SendCloseAsync((WebSocketCloseStatus)code, reason).ConfigureAwait(false);
                Task done = await Task.WhenAny(closeSeen.Task, Task.Delay(TimeSpan.FromSeconds(5))).ConfigureAwait(false);
                if (done != closeSeen.Task) socket.Abort();
                return;
            }
            await sendLock.WaitAsync().ConfigureAwait(false);
            try
            {
                using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5)))
                {
                    // Sends Close and reads until the server's Close arrives.
                    await socket.CloseAsync((WebSocketCloseStatus)code, reason, timeout.Token).ConfigureAwait(false);
                }
                if (closeCode == 0)
                {
                    closeCode = socket.CloseStatus.HasValue ? (int)socket.CloseStatus.Value : code;
                    closeReason = socket.CloseStatusDescription ?? reason;
                }
            }
            catch (OperationCanceledException) { socket.Abort(); }
            catch (WebSocketException) { socket.Abort(); }
            catch (ObjectDisposedException) { }
            finally
            {
                sendLock.Release();
                closeSeen.TrySetResult(true);
            }
        }

        /// <summary>The close code and reason, once closed (0 while open).</summary>
        public int CloseCode { get { return closeCode; } }
        public string CloseReason { get { return closeReason ?? ""; } }

        public void Dispose()
        {
            socket.Dispose();
        }
    }

    // ---------------------------------------------------------------- reconnecting session

    public sealed class ChatSessionOptions
    {
        public ServerUrl Server;
        public string User;
        public string Password;
        /// <summary>Reconnect after a drop (1001, 1006, 1008, ...). Off: the first close ends Run.</summary>
        public bool Reconnect = true;
        public TimeSpan InitialBackoff = TimeSpan.FromMilliseconds(500);
        public TimeSpan MaxBackoff = TimeSpan.FromSeconds(30);
        /// <summary>Retry when the very first connection fails too. Off: a server that is
        /// unreachable (or untrusted, or refuses the login) at start makes Run throw at once.</summary>
        public bool RetryFirstConnect = false;
    }

    /// <summary>Keeps one connection alive, rejoining rooms after each reconnect.</summary>
    public sealed class ChatSession
    {
        readonly ChatSessionOptions options;
        readonly object gate = new object();
        readonly List<string> rooms = new List<string>(); // rooms to be in, in join order
        readonly Random random = new Random();
        ChatConnection current;
        TaskCompletionSource<ChatConnection> connected = new TaskCompletionSource<ChatConnection>();
        bool stopping;

        /// <summary>Every event received, in order (from the receive loop's thread).</summary>
        public event Action<ChatEvent> EventReceived;
        /// <summary>A connection is up and its welcome checked (before the rooms are rejoined).</summary>
        public event Action<Welcome> Connected;
        /// <summary>The connection closed: code (1006 when dropped) and reason.</summary>
        public event Action<int, string> Closed;
        /// <summary>The next attempt comes after this delay; the string says why.</summary>
        public event Action<TimeSpan, string> Reconnecting;

        public ChatSession(ChatSessionOptions options)
        {
            this.options = options;
        }

        public IList<string> Rooms { get { lock (gate) return rooms.ToList(); } }

        /// <summary>Joins now if connected, and after every reconnect.</summary>
        public async Task JoinAsync(string room)
        {
            lock (gate) { if (!rooms.Contains(room)) rooms.Add(room); }
            ChatConnection c = current;
            if (c != null) await c.JoinAsync(room).ConfigureAwait(false);
        }

        public async Task LeaveAsync(string room)
        {
            lock (gate) rooms.Remove(room);
            ChatConnection c = current;
            if (c != null) await c.LeaveAsync(room).ConfigureAwait(false);
        }

        /// <summary>Sends on the current connection, waiting for one if reconnecting.</summary>
        public async Task SendMessageAsync(string room, string text, CancellationToken ct = default(CancellationToken))
        {
            while (true)
            {
                ChatConnection c = await WaitConnectedAsync(ct).ConfigureAwait(false);
                try
                {
                    await c.SendMessageAsync(room, text, ct).ConfigureAwait(false);
                    return;
                }
                catch (ConnectionClosedException)
                {
                    if (!options.Reconnect || stopping) throw;
                    // wait for the next connection
                }
            }
        }

        public async Task ListRoomsAsync()
        {
            ChatConnection c = await WaitConnectedAsync(CancellationToken.None).ConfigureAwait(false);
            await c.ListRoomsAsync().ConfigureAwait(false);
        }

        async Task<ChatConnection> WaitConnectedAsync(CancellationToken ct)
        {
            Task<ChatConnection> task;
            lock (gate) task = connected.Task;
            var cancelled = new TaskCompletionSource<ChatConnection>();
            using (ct.Register(() => cancelled.TrySetCanceled()))
            {
                return await (await Task.WhenAny(task, cancelled.Task).ConfigureAwait(false)).ConfigureAwait(false);
            }
        }

        /// <summary>Closes the current connection with 1000 (full handshake) and ends Run.</summary>
        public async Task StopAsync()
        {
            stopping = true;
            ChatConnection c = current;
            if (c != null) await c.CloseAsync(1000, "bye").ConfigureAwait(false);
            lock (gate) connected.TrySetException(new ConnectionClosedException(1000, "stopped"));
        }

        /// <summary>Connects and receives until stopped. Throws LoginException for a refused
        /// login (wrong password: retrying cannot help) and ProtocolVersionException.</summary>
        public async Task RunAsync(CancellationToken ct)
        {
            int failures = 0;
            bool everConnected = false;
            while (!stopping && !ct.IsCancellationRequested)
            {
                bool retry = options.Reconnect && (everConnected || options.RetryFirstConnect);
                ChatConnection connection;
                try
                {
                    connection = await ChatConnection.ConnectAsync(options.Server, options.User, options.Password, ct)
                        .ConfigureAwait(false);
                }
                catch (LoginException e) when (!e.IsPermanent && retry)
                {
                    TimeSpan delay = Backoff(failures++);
                    if (e.RetryAfter.HasValue && e.RetryAfter.Value > delay) delay = e.RetryAfter.Value;
                    await Wait(delay, "login: " + e.Code + " " + e.Message, ct).ConfigureAwait(false);
                    continue;
                }
                catch (Exception e) when (retry && IsTransient(e, ct))
                {
                    await Wait(Backoff(failures++), Describe(e), ct).ConfigureAwait(false);
                    continue;
                }

                failures = 0;
                everConnected = true;
                current = connection;
                int code;
                string reason;
                try
                {
                    var welcome = connection.Welcome;
                    if (Connected != null) Connected(welcome);
                    foreach (string room in Rooms) await connection.JoinAsync(room, ct).ConfigureAwait(false);
                    lock (gate) connected.TrySetResult(connection);
                    while (true)
                    {
                        ChatEvent e = await connection.ReceiveAsync(ct).ConfigureAwait(false);
                        if (EventReceived != null) EventReceived(e);
                    }
                }
                catch (ConnectionClosedException e)
                {
                    code = e.Code;
                    reason = e.Reason;
                }
                finally
                {
                    lock (gate)
                    {
                        current = null;
                        if (connected.Task.IsCompleted) connected = new TaskCompletionSource<ChatConnection>();
                    }
                    connection.Dispose();
                }
                if (Closed != null) Closed(code, reason);
                if (stopping || !options.Reconnect) break;
                // 1002, 1007, 1009: this client broke the protocol; reconnecting would repeat it.
                // 4003: an operator disabled the account; a login would get 403.
                if (code == 1002 || code == 1007 || code == 1009 || code == 4003)
                    throw new ConnectionClosedException(code, reason);
                await Wait(Backoff(failures++), "closed " + code, ct).ConfigureAwait(false);
            }
            lock (gate) connected.TrySetException(new ConnectionClosedException(1000, "stopped"));
        }

        /// <summary>Worth another try: the server is unreachable, restarting, or answered oddly.</summary>
        static bool IsTransient(Exception e, CancellationToken ct)
        {
            if (e is OperationCanceledException) return !ct.IsCancellationRequested; // an HTTP timeout
            return e is HttpRequestException || e is WebSocketException || e is IOException
                || e is ConnectionClosedException || e is SerializationException;
        }

        static string Describe(Exception e)
        {
            var inner = e;
            while (inner.InnerException != null) inner = inner.InnerException;
            return inner == e ? e.Message : e.Message + " (" + inner.Message + ")";
        }

        /// <summary>Exponential backoff with jitter: a random delay in [d/2, d], d doubling from
        /// InitialBackoff up to MaxBackoff.</summary>
        TimeSpan Backoff(int failures)
        {
            double max = options.InitialBackoff.TotalMilliseconds * Math.Pow(2, Math.Min(failures, 20));
            max = Math.Min(max, options.MaxBackoff.TotalMilliseconds);
            double jittered;
            lock (random) jittered = max / 2 + random.NextDouble() * max / 2;
            return TimeSpan.FromMilliseconds(jittered);
        }

        async Task Wait(TimeSpan delay, string why, CancellationToken ct)
        {
            if (Reconnecting != null) Reconnecting(delay, why);
            await Task.Delay(delay, ct).ConfigureAwait(false);
        }
    }
}
