// One WebSocket connection (docs/protocol.md sections 1, 3, 7 and 10): open it with a ticket,
// check welcome, send requests with refs, receive events with their requests attached, detect
// a dead server, and close with the full handshake. It keeps no chat state: that is the
// session's (Session.cs).

using System;
using System.IO;
using System.Net.WebSockets;
using System.Threading;
using System.Threading.Tasks;

namespace Chat.Client
{
    /// <summary>One authenticated WebSocket connection. Send from any thread (frames leave in
    /// the order they were sent); receive from one loop only.</summary>
    public sealed class ChatConnection : IDisposable
    {
        public const int ProtocolVersion = 1;
        const int ChunkSize = 16 * 1024;

        readonly ClientWebSocket socket;
        readonly FrameWriter writer;
        readonly PendingRequests requests = new PendingRequests();
        readonly byte[] chunk = new byte[ChunkSize];
        long maxIncoming = 1024 * 1024; // until welcome tells the real limit
        DateTime lastReceived = DateTime.UtcNow;
        bool probing;
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
            writer = new FrameWriter(socket);
        }

        /// <summary>Opens the socket with <paramref name="ticket"/>, reads and checks <c>welcome</c>.</summary>
        public static async Task<ChatConnection> OpenAsync(ServerUrl server, string ticket, CancellationToken ct)
        {
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
                ChatEvent first = await connection.ReceiveEventAsync(ct).ConfigureAwait(false);
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

        /// <summary>Sends <paramref name="request"/> with a fresh ref; its answer will carry it
        /// as <see cref="ChatEvent.Request"/>. On a closing or broken socket the request is
        /// dropped (false) and will never be answered; the receive loop reports the close.</summary>
        public bool Send(Request request)
        {
            requests.Add(request);
            return writer.Enqueue(request.Encode());
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
            while (true)
            {
                ChatEvent e = await ReceiveEventAsync(ct).ConfigureAwait(false);
                e.Request = requests.Take(e.Ref);
                if (e.Request != null && e.Request.IsProbe) continue; // answered our probe, not the caller
                return e;
            }
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
                catch (ObjectDisposedException e)
                {
                    throw Closed(1006, e.Message);
                }
                lastReceived = DateTime.UtcNow;
                probing = false;

                if (result.MessageType == WebSocketMessageType.Close)
                {
                    int code = result.CloseStatus.HasValue ? (int)result.CloseStatus.Value : 1005;
                    string reason = result.CloseStatusDescription ?? "";
                    // Answer it (RFC 6455 5.5.1), echoing its code; a Close of ours already sent counts.
                    await writer.CloseAsync(result.CloseStatus ?? WebSocketCloseStatus.NormalClosure, reason).ConfigureAwait(false);
                    throw Closed(code, reason);
                }

                message.Write(chunk, 0, result.Count);
                if (message.Length > maxIncoming)
                {
                    // Fail the connection (RFC 6455 7.1.7): send Close, do not wait for the reply.
                    await writer.CloseAsync(WebSocketCloseStatus.MessageTooBig, "message too big").ConfigureAwait(false);
                    socket.Abort();
                    throw Closed(1009, "the server sent a message larger than announced");
                }
                if (!result.EndOfMessage) continue; // a fragmented message: keep assembling
                if (result.MessageType == WebSocketMessageType.Binary)
                {
                    message.SetLength(0); // section 3: binary frames are not used; ignore
                    continue;
                }
                return EventParser.Parse(message.GetBuffer(), (int)message.Length);
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
                Send(Request.Probe()); // matched by its ref when the answer comes
            }
        }

        ConnectionClosedException Closed(int code, string reason)
        {
            if (closeCode == 0) { closeCode = code; closeReason = reason; }
            closeSeen.TrySetResult(true);
            return new ConnectionClosedException(code, reason);
        }

        /// <summary>Closes with the full handshake: sends Close after the frames already sent,
        /// waits (at most 5 s) for the server's Close in reply, then the socket is closed.</summary>
        /// <remarks>If a receive loop is running, it is the one that reads the server's Close
        /// (and then ends with ConnectionClosedException carrying the echoed code): only one
        /// ReceiveAsync may run at a time on ClientWebSocket, so this method only sends.</remarks>
        public async Task CloseAsync(int code = 1000, string reason = "bye")
        {
            if (socket.State != WebSocketState.Open && socket.State != WebSocketState.CloseReceived) return;
            await writer.CloseAsync((WebSocketCloseStatus)code, reason).ConfigureAwait(false);
            if (!receiving) await DrainUntilCloseAsync().ConfigureAwait(false);
            Task done = await Task.WhenAny(closeSeen.Task, Task.Delay(TimeSpan.FromSeconds(5))).ConfigureAwait(false);
            if (done != closeSeen.Task) socket.Abort();
        }

        /// <summary>Without a receive loop (a refused welcome): reads, and drops, what comes
        /// until the server's Close.</summary>
        async Task DrainUntilCloseAsync()
        {
            using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5)))
            {
                try
                {
                    while (true) await ReceiveEventAsync(timeout.Token).ConfigureAwait(false);
                }
                catch (ConnectionClosedException) { }
                catch (OperationCanceledException) { }
                catch (Exception e) when (e is InvalidDataException || e is System.Runtime.Serialization.SerializationException) { }
            }
        }

        /// <summary>The close code and reason, once closed (0 while open).</summary>
        public int CloseCode { get { return closeCode; } }
        public string CloseReason { get { return closeReason ?? ""; } }

        public void Dispose()
        {
            writer.Dispose();
            socket.Dispose();
        }
    }
}
