// The reconnecting session (docs/protocol.md sections 1, 4 and 11): one connection at a time,
// each opened with a fresh ticket (Auth.cs); on each, every room is joined again, resuming
// after the newest message held in the epoch held (RoomState.cs), and once a room's joined
// has come, its unacknowledged messages are sent again with their client_ids (Outbox.cs).
// What it concludes comes out as one ordered stream of events, for the program to show.

using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Net.Http;
using System.Net.WebSockets;
using System.Runtime.Serialization;
using System.Threading;
using System.Threading.Tasks;

namespace Chat.Client
{
    public sealed class ChatSessionOptions
    {
        public ServerUrl Server;
        public string User;
        /// <summary>Kept in memory for as long as the session runs: needed again only if the
        /// server ends the session (401 invalid_session).</summary>
        public string Password;
        /// <summary>Reconnect after a drop (1001, 1006, 1008, ...). Off: the first close ends Run.</summary>
        public bool Reconnect = true;
        public TimeSpan InitialBackoff = TimeSpan.FromMilliseconds(500);
        public TimeSpan MaxBackoff = TimeSpan.FromSeconds(30);
        /// <summary>Retry when the very first connection fails too. Off: a server that is
        /// unreachable (or untrusted, or refuses the login) at start makes Run throw at once.</summary>
        public bool RetryFirstConnect = false;
    }

    /// <summary>What <see cref="ChatSession.RequestHistory"/> did.</summary>
    public enum HistoryRequestResult
    {
        /// <summary>A page was asked for; its messages come as MessageHeld events.</summary>
        Sent,
        /// <summary>Nothing older is stored; nothing was sent.</summary>
        AtStart,
        /// <summary>The room is not joined right now (not a room of the session, or reconnecting).</summary>
        NotJoined,
        /// <summary>A page for the room is already on its way.</summary>
        Pending,
    }

    /// <summary>Keeps one connection alive and the rooms' state across connections.</summary>
    /// <remarks>Every event is raised from the task running <see cref="RunAsync"/>, one at a
    /// time, in the order the server sent what they come from. The other methods may be
    /// called from any thread.</remarks>
    public sealed class ChatSession
    {
        readonly ChatSessionOptions options;
        readonly Authenticator auth;
        /// <summary>Guards rooms, outbox, current and settled: the receive loop and the
        /// callers' sends meet here, so that a send cannot slip between a room's joined and
        /// the resends that follow it.</summary>
        readonly object gate = new object();
        /// <summary>The rooms to be in, in join order.</summary>
        readonly List<RoomState> rooms = new List<RoomState>();
        readonly Outbox outbox = new Outbox();
        readonly Random random = new Random();
        /// <summary>Cancels a connection attempt or a backoff wait when stopping.</summary>
        readonly CancellationTokenSource stop = new CancellationTokenSource();
        ChatConnection current;
        TaskCompletionSource<bool> settled;
        volatile bool stopping;

        /// <summary>Everything that happened, in order: the server's events, except that
        /// new_message and history_page become one <see cref="MessageHeld"/> per message not
        /// held before (and <see cref="HistoryStart"/>), and the session's own (SessionEvents.cs).</summary>
        public event Action<ChatEvent> Events;

        public ChatSession(ChatSessionOptions options)
        {
            this.options = options;
            auth = new Authenticator(options.Server, options.User, options.Password);
        }

        public IList<string> Rooms { get { lock (gate) return rooms.Select(r => r.Name).ToList(); } }

        /// <summary>Joins now if connected, and after every reconnect (resuming).</summary>
        public void Join(string room)
        {
            lock (gate)
            {
                if (Find(room) != null) return;
                var state = new RoomState(room);
                rooms.Add(state);
                if (current != null) current.Send(state.JoinRequest());
            }
        }

        /// <summary>Leaves the room; its messages not yet acknowledged are dropped.</summary>
        public void Leave(string room)
        {
            lock (gate)
            {
                RoomState state = Find(room);
                if (state == null) return;
                rooms.Remove(state);
                outbox.DropRoom(room);
                SignalIfSettled();
                if (current != null && state.Live) current.Send(Request.Leave(room));
            }
        }

        /// <summary>Sends a message to a room of the session: at once if the room is joined,
        /// else once it is; again after a reconnect until acknowledged.</summary>
        public OutgoingMessage Send(string room, string text)
        {
            lock (gate)
            {
                RoomState state = Find(room);
                if (state == null) throw new InvalidOperationException("not a room of this session: " + room);
                OutgoingMessage message = outbox.Add(room, text);
                if (current != null && state.Live) Transmit(current, message);
                return message;
            }
        }

        /// <summary>Asks for the page of the room's messages just older than those held
        /// (at most <paramref name="limit"/>; null: the server's default).</summary>
        public HistoryRequestResult RequestHistory(string room, int? limit = null)
        {
            lock (gate)
            {
                RoomState state = Find(room);
                if (state != null && state.AtStart) return HistoryRequestResult.AtStart;
                if (state == null || current == null || !state.Live) return HistoryRequestResult.NotJoined;
                if (state.HistoryPending) return HistoryRequestResult.Pending;
                state.HistoryPending = true;
                current.Send(Request.History(room, state.NextPageBefore(), limit));
                return HistoryRequestResult.Sent;
            }
        }

        /// <summary>Messages not delivered: refused by the server (rate_limited, ...) or
        /// dropped with their room.</summary>
        public int Undelivered { get { lock (gate) return outbox.Refused; } }

        /// <summary>Messages sent and not yet both acknowledged and seen.</summary>
        public int Unsettled { get { lock (gate) return outbox.Count; } }

        /// <summary>Completes when every message sent so far is acknowledged and held, or refused.</summary>
        public Task WhenSettledAsync()
        {
            lock (gate)
            {
                if (outbox.Count == 0) return Task.FromResult(true);
                if (settled == null || settled.Task.IsCompleted)
                    settled = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
                return settled.Task;
            }
        }

        /// <summary>Closes the current connection with 1000 (full handshake) and ends Run.</summary>
        public async Task StopAsync()
        {
            stopping = true;
            ChatConnection c;
            lock (gate) c = current;
            if (c != null) await c.CloseAsync(1000, "bye").ConfigureAwait(false);
            stop.Cancel();
        }

        /// <summary>Ends the session on the server (<c>POST /api/logout</c>), waiting at most
        /// 5 s. False if the server could not be told; the session then ends on its own.</summary>
        public async Task<bool> LogoutAsync()
        {
            using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5)))
            {
                try
                {
                    await auth.LogoutAsync(timeout.Token).ConfigureAwait(false);
                    return true;
                }
                catch (ApiException) { return false; }
                catch (Exception e) when (IsTransient(e, CancellationToken.None)) { return false; }
            }
        }

        /// <summary>Connects and receives until stopped. Throws ApiException for a refused
        /// login (wrong password: retrying cannot help), ProtocolVersionException, and
        /// ConnectionClosedException for a close that a reconnect would only repeat.</summary>
        public async Task RunAsync(CancellationToken ct)
        {
            using (var connecting = CancellationTokenSource.CreateLinkedTokenSource(ct, stop.Token))
            {
                try
                {
                    await RunLoopAsync(ct, connecting.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (stopping && !ct.IsCancellationRequested)
                {
                    // StopAsync interrupted a connection attempt or a backoff wait.
                }
            }
        }

        async Task RunLoopAsync(CancellationToken ct, CancellationToken connecting)
        {
            int failures = 0;
            bool everConnected = false;
            while (!stopping && !ct.IsCancellationRequested)
            {
                bool retry = options.Reconnect && (everConnected || options.RetryFirstConnect);
                ChatConnection connection;
                try
                {
                    Ticket ticket = await auth.TicketAsync(connecting).ConfigureAwait(false);
                    Emit(new LoggedIn { Source = ticket.Source });
                    connection = await ChatConnection.OpenAsync(options.Server, ticket.Value, connecting).ConfigureAwait(false);
                }
                catch (ApiException e) when (!e.IsPermanent && retry)
                {
                    TimeSpan delay = Backoff(failures++);
                    if (e.RetryAfter.HasValue && e.RetryAfter.Value > delay) delay = e.RetryAfter.Value;
                    await Wait(delay, "login: " + e.Code + " " + e.Message, connecting).ConfigureAwait(false);
                    continue;
                }
                catch (Exception e) when (retry && !stopping && IsTransient(e, ct))
                {
                    await Wait(Backoff(failures++), Describe(e), connecting).ConfigureAwait(false);
                    continue;
                }

                failures = 0;
                everConnected = true;
                Emit(connection.Welcome);
                int code;
                string reason;
                try
                {
                    if (!Attach(connection))
                    {
                        await connection.CloseAsync(1000, "bye").ConfigureAwait(false);
                        return;
                    }
                    while (true)
                    {
                        ChatEvent e = await connection.ReceiveAsync(ct).ConfigureAwait(false);
                        foreach (ChatEvent shown in Apply(e, connection)) Emit(shown);
                    }
                }
                catch (ConnectionClosedException e)
                {
                    code = e.Code;
                    reason = e.Reason;
                }
                finally
                {
                    Detach(connection);
                    connection.Dispose();
                }
                Emit(new Closed { Code = code, Reason = reason });
                if (stopping || !options.Reconnect) break;
                // 1002, 1007, 1009: this client broke the protocol; reconnecting would repeat it.
                // 4003: an operator disabled the account; a login would get 403.
                if (code == 1002 || code == 1007 || code == 1009 || code == 4003)
                    throw new ConnectionClosedException(code, reason);
                await Wait(Backoff(failures++), "closed " + code, connecting).ConfigureAwait(false);
            }
        }

        /// <summary>Makes <paramref name="connection"/> the current one and joins every room on
        /// it; false if the session is stopping.</summary>
        bool Attach(ChatConnection connection)
        {
            lock (gate)
            {
                if (stopping) return false;
                current = connection;
                foreach (RoomState room in rooms) connection.Send(room.JoinRequest());
                return true;
            }
        }

        void Detach(ChatConnection connection)
        {
            lock (gate)
            {
                if (current == connection) current = null;
                foreach (RoomState room in rooms)
                {
                    room.Live = false;
                    room.HistoryPending = false; // its answer died with the connection
                }
            }
        }

        /// <summary>Takes one event into the state; returns what to show, in order.</summary>
        List<ChatEvent> Apply(ChatEvent e, ChatConnection connection)
        {
            var shown = new List<ChatEvent>();
            lock (gate)
            {
                var message = e as NewMessage;
                if (message != null) { HoldMessage(message.Message, shown); return shown; }
                var joined = e as Joined;
                if (joined != null) { ApplyJoined(joined, connection, shown); return shown; }
                var ack = e as Ack;
                if (ack != null) { ApplyAck(ack, shown); return shown; }
                var page = e as HistoryPage;
                if (page != null) { ApplyPage(page, shown); return shown; }
                var gap = e as HistoryGap;
                if (gap != null)
                {
                    RoomState state = Find(gap.Room);
                    if (state != null) state.ApplyGap(gap);
                    shown.Add(gap);
                    return shown;
                }
                var error = e as ServerError;
                if (error != null) ApplyError(error, connection);
                shown.Add(e);
                return shown;
            }
        }

        void HoldMessage(ChatMessage message, List<ChatEvent> shown)
        {
            RoomState state = Find(message.Room);
            // A room left a moment ago, or a copy already held: nothing to show.
            if (state == null || !state.Hold(message)) return;
            Shown(message, shown);
        }

        void Shown(ChatMessage message, List<ChatEvent> shown)
        {
            shown.Add(new MessageHeld { Message = message });
            outbox.Seen(message.Room, message.Seq);
            SignalIfSettled();
        }

        void ApplyJoined(Joined joined, ChatConnection connection, List<ChatEvent> shown)
        {
            RoomState state = Find(joined.Room);
            if (state == null) { shown.Add(joined); return; } // left before the answer came
            JoinOutcome outcome = state.ApplyJoined(joined);
            if (outcome.EpochChanged)
            {
                outbox.ForgetAcked(state.Name);
                SignalIfSettled();
                shown.Add(new EpochChanged { Room = state.Name, OldEpoch = outcome.OldEpoch, NewEpoch = joined.Epoch });
            }
            shown.Add(joined);
            foreach (ChatMessage m in outcome.NewMessages) Shown(m, shown);
            state.Live = true;
            // Section 11: resend what was not acknowledged once the room's joined has come, so
            // that the server, which stores a client_id once, can ack an earlier copy.
            foreach (OutgoingMessage pending in outbox.Unacked(state.Name)) Transmit(connection, pending);
        }

        void ApplyAck(Ack ack, List<ChatEvent> shown)
        {
            string clientId = ack.ClientId ?? (ack.Request != null ? ack.Request.ClientId : null);
            RoomState state = Find(ack.Room);
            if (clientId != null) outbox.Acked(clientId, ack.Seq, state != null && state.Holds(ack.Seq));
            SignalIfSettled();
            shown.Add(ack);
        }

        void ApplyPage(HistoryPage page, List<ChatEvent> shown)
        {
            RoomState state = Find(page.Room);
            if (state == null) return;
            foreach (ChatMessage m in state.ApplyPage(page)) Shown(m, shown);
            if (state.AtStart) shown.Add(new HistoryStart { Room = state.Name });
        }

        void ApplyError(ServerError error, ChatConnection connection)
        {
            Request request = error.Request;
            if (request == null) return;
            RoomState state = request.Room != null ? Find(request.Room) : null;
            switch (request.Type)
            {
                case "send_message":
                    // Not stored, not relayed (section 5): it is reported, not retried.
                    outbox.Refuse(request.ClientId);
                    SignalIfSettled();
                    break;
                case "history":
                    if (state != null) state.HistoryPending = false;
                    break;
                case "join_room":
                    if (state == null) break;
                    if (error.Code == "invalid_room_name" || error.Code == "too_many_rooms")
                    {
                        // Every later join would be refused the same way.
                        rooms.Remove(state);
                        outbox.DropRoom(state.Name);
                        SignalIfSettled();
                    }
                    else
                    {
                        RejoinLater(state, connection); // rate_limited, internal: worth another try
                    }
                    break;
            }
        }

        /// <summary>Joins the room again in a second, if still on the same connection and not joined.</summary>
        void RejoinLater(RoomState state, ChatConnection connection)
        {
            Task.Delay(TimeSpan.FromSeconds(1)).ContinueWith(_ =>
            {
                lock (gate)
                {
                    if (current == connection && rooms.Contains(state) && !state.Live)
                        connection.Send(state.JoinRequest());
                }
            });
        }

        void Transmit(ChatConnection connection, OutgoingMessage message)
        {
            connection.Send(Request.SendMessage(message.Room, message.Text, message.ClientId));
        }

        RoomState Find(string room)
        {
            return rooms.Find(r => r.Name == room);
        }

        void SignalIfSettled()
        {
            if (outbox.Count == 0 && settled != null) settled.TrySetResult(true);
        }

        void Emit(ChatEvent e)
        {
            Action<ChatEvent> handler = Events;
            if (handler != null) handler(e);
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
            Emit(new Reconnecting { Delay = delay, Why = why });
            await Task.Delay(delay, ct).ConfigureAwait(false);
        }
    }
}
