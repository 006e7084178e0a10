// The one writer of a socket. ClientWebSocket allows one send at a time, and the order of
// sends matters (a resend must leave after the join it follows, messages in the order they
// were typed), so every frame and the Close go through one queue drained by one task.

using System;
using System.Collections.Generic;
using System.Net.WebSockets;
using System.Threading;
using System.Threading.Tasks;

namespace Chat.Client
{
    internal sealed class FrameWriter : IDisposable
    {
        /// <summary>A queued frame, or (Frame null) the Close that ends the queue.</summary>
        sealed class Item
        {
            public byte[] Frame;
            public WebSocketCloseStatus Status;
            public string Reason;
            public readonly TaskCompletionSource<bool> Done = new TaskCompletionSource<bool>();
        }

        readonly ClientWebSocket socket;
        readonly Queue<Item> queue = new Queue<Item>();
        readonly SemaphoreSlim queued = new SemaphoreSlim(0);
        readonly CancellationTokenSource stop = new CancellationTokenSource();
        /// <summary>Completed once a Close is sent, tried, or the writer ended; later frames are dropped.</summary>
        Task closing;
        bool ended;

        public FrameWriter(ClientWebSocket socket)
        {
            this.socket = socket;
            Task.Run(() => LoopAsync());
        }

        /// <summary>Queues one text message. False if the socket is closing or broken: the
        /// frame is dropped, and the receive side reports the close.</summary>
        public bool Enqueue(byte[] frame)
        {
            lock (queue)
            {
                if (closing != null || ended) return false;
                queue.Enqueue(new Item { Frame = frame });
            }
            queued.Release();
            return true;
        }

        /// <summary>Sends Close after the frames already queued (once: later calls get the first
        /// one's task). Completes when it was sent, or could not be.</summary>
        public Task CloseAsync(WebSocketCloseStatus status, string reason)
        {
            var item = new Item { Status = status, Reason = reason };
            lock (queue)
            {
                if (closing != null) return closing;
                closing = item.Done.Task;
                if (ended) { item.Done.TrySetResult(false); return closing; }
                queue.Enqueue(item);
            }
            queued.Release();
            return closing;
        }

        async Task LoopAsync()
        {
            try
            {
                while (true)
                {
                    await queued.WaitAsync(stop.Token).ConfigureAwait(false);
                    Item item;
                    lock (queue) item = queue.Dequeue();
                    if (item.Frame != null)
                    {
                        // One text message per event (section 3).
                        await socket.SendAsync(new ArraySegment<byte>(item.Frame), WebSocketMessageType.Text, true, stop.Token)
                            .ConfigureAwait(false);
                        continue;
                    }
                    // A Close already exchanged (the platform may answer the server's itself) is not sent again.
                    if (socket.State == WebSocketState.Open || socket.State == WebSocketState.CloseReceived)
                    {
                        using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(stop.Token))
                        {
                            timeout.CancelAfter(TimeSpan.FromSeconds(5));
                            await socket.CloseOutputAsync(item.Status, item.Reason, timeout.Token).ConfigureAwait(false);
                        }
                    }
                    item.Done.TrySetResult(true);
                    return;
                }
            }
            catch (OperationCanceledException) { Abort(); }
            catch (WebSocketException) { Abort(); }   // the receive loop then reports 1006
            catch (ObjectDisposedException) { }
            catch (InvalidOperationException) { Abort(); }
            finally
            {
                lock (queue)
                {
                    ended = true;
                    foreach (Item left in queue) left.Done.TrySetResult(false);
                    queue.Clear();
                }
            }
        }

        void Abort()
        {
            try { socket.Abort(); }
            catch (ObjectDisposedException) { }
        }

        public void Dispose()
        {
            stop.Cancel();
        }
    }
}
