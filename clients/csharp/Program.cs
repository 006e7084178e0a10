// chat-client: a console program on top of ChatClient.cs.
//
//   chat-client --server URL --user NAME --room ROOM [--room ROOM ...] [options]
//
// Joins the rooms, prints every event as one line on standard output, and sends each
// non-blank line of standard input as a message to the first room. See README.md.

using System;
using System.Collections.Generic;
using System.IO;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using Chat.Client;

namespace Chat.Console
{
    public static class Program
    {
        const string Usage =
@"usage: chat-client --server URL --user NAME --room ROOM [--room ROOM ...]
                   [--password-env VAR] [--send TEXT ...] [--no-stdin] [--exit-on-close]

  --server URL        http://, https://, ws:// or wss:// (default: CHAT_SERVER or http://127.0.0.1:8080)
  --user NAME         the account (default: CHAT_USER)
  --password-env VAR  read the password from environment variable VAR (default: CHAT_PASSWORD)
  --room ROOM         join ROOM (repeatable); stdin lines go to the first one
  --send TEXT         send TEXT to the first room once joined (repeatable)
  --no-stdin          do not read standard input; run until interrupted or closed
  --exit-on-close     do not reconnect: exit when the server closes the connection

Output, one line per event: connected USER protocol N | joined ROOM A,B | left ROOM |
member_joined ROOM USER | member_left ROOM USER | new_message ROOM FROM: TEXT |
room_list NAME:COUNT ... | error CODE MESSAGE | closed CODE REASON | reconnecting MS WHY | ignored TYPE

Exit codes: 0 done (stdin ended and every message was relayed, or the server closed with
1000/1001 under --exit-on-close), 1 local problem, 2 usage, 3 login refused,
4 server unreachable at start (or untrusted), connection lost under --exit-on-close, or
messages not confirmed; 5 the server refused to join a room (invalid name, too many rooms);
6 protocol version not supported. Once connected, it reconnects.";

        static readonly object OutputLock = new object();
        static TextWriter stdout;

        static void Print(string line)
        {
            lock (OutputLock)
            {
                stdout.Write(line);
                stdout.Write('\n');
                stdout.Flush();
            }
        }

        static void Fail(string message)
        {
            lock (OutputLock)
            {
                System.Console.Error.WriteLine("chat-client: " + message);
                System.Console.Error.Flush();
            }
        }

        public static int Main(string[] args)
        {
            // UTF-8 both ways whatever the locale (Mono follows LANG; a test has none).
            stdout = new StreamWriter(System.Console.OpenStandardOutput(), new UTF8Encoding(false));
            try
            {
                return Run(args).GetAwaiter().GetResult();
            }
            catch (Exception e)
            {
                Fail(e.Message);
                return 1;
            }
        }

        static async Task<int> Run(string[] args)
        {
            string server = Environment.GetEnvironmentVariable("CHAT_SERVER") ?? "http://127.0.0.1:8080";
            string user = Environment.GetEnvironmentVariable("CHAT_USER");
            string passwordEnv = "CHAT_PASSWORD";
            var rooms = new List<string>();
            var sends = new List<string>();
            bool readStdin = true, exitOnClose = false;
            for (int i = 0; i < args.Length; i++)
            {
                string arg = args[i];
                Func<string> value = () =>
                {
                    if (i + 1 >= args.Length) throw new ArgumentException(arg + " needs a value");
                    return args[++i];
                };
                try
                {
                    switch (arg)
                    {
                        case "--server": server = value(); break;
                        case "--user": user = value(); break;
                        case "--password-env": passwordEnv = value(); break;
                        case "--room": rooms.Add(value()); break;
                        case "--send": sends.Add(value()); break;
                        case "--no-stdin": readStdin = false; break;
                        case "--exit-on-close": exitOnClose = true; break;
                        case "-h": case "--help": stdout.Write(Usage + "\n"); stdout.Flush(); return 0;
                        default: throw new ArgumentException("unknown argument " + arg);
                    }
                }
                catch (ArgumentException e)
                {
                    Fail(e.Message + "\n" + Usage);
                    return 2;
                }
            }
            string password = Environment.GetEnvironmentVariable(passwordEnv);
            if (string.IsNullOrEmpty(user) || rooms.Count == 0 || string.IsNullOrEmpty(password))
            {
                Fail((string.IsNullOrEmpty(user) ? "--user is required" : rooms.Count == 0 ? "at least one --room is required"
                      : "no password: set " + passwordEnv) + "\n" + Usage);
                return 2;
            }
            ServerUrl url;
            try { url = new ServerUrl(server); }
            catch (ArgumentException e) { Fail(e.Message); return 2; }

            var session = new ChatSession(new ChatSessionOptions
            {
                Server = url,
                User = user,
                Password = password,
                Reconnect = !exitOnClose,
            });
            string mainRoom = rooms[0];
            string me = user;
            var pending = new LinkedList<string>(); // sent texts not yet seen relayed
            var allRelayed = new TaskCompletionSource<bool>();
            var firstJoined = new TaskCompletionSource<bool>();
            int lastClose = 0;

            session.Connected += welcome =>
            {
                me = welcome.User;
                Print("connected " + welcome.User + " protocol " + welcome.ProtocolVersion);
            };
            session.Closed += (code, reason) =>
            {
                lastClose = code;
                Print("closed " + code + " " + Inert(reason));
            };
            session.Reconnecting += (delay, why) => Print("reconnecting " + (int)delay.TotalMilliseconds + "ms " + Inert(why));
            session.EventReceived += e => Handle(e, me, mainRoom, pending, allRelayed, firstJoined);
            foreach (string room in rooms) await session.JoinAsync(room);

            Task run = session.RunAsync(CancellationToken.None);

            // Ctrl+C / SIGINT: close properly.
            System.Console.CancelKeyPress += (sender, e) =>
            {
                e.Cancel = true;
                session.StopAsync().Wait(TimeSpan.FromSeconds(6));
            };

            Task input = Task.Run(async () =>
            {
                await Task.WhenAny(firstJoined.Task, run);
                if (run.IsCompleted) return;
                if (firstJoined.Task.IsFaulted) throw firstJoined.Task.Exception.GetBaseException();
                foreach (string text in sends) await SendTracked(session, mainRoom, text, pending);
                if (!readStdin) { await Task.Delay(Timeout.Infinite, CancellationToken.None).ContinueWith(_ => { }); return; }
                var reader = new StreamReader(System.Console.OpenStandardInput(), new UTF8Encoding(false));
                string line;
                while ((line = await reader.ReadLineAsync()) != null)
                {
                    if (line.Trim().Length == 0) continue; // the server would answer empty_message
                    await SendTracked(session, mainRoom, line, pending);
                }
            });

            Task first = await Task.WhenAny(run, input);
            if (first == input && !run.IsCompleted)
            {
                if (input.IsFaulted)
                {
                    var refused = input.Exception.GetBaseException() as RefusedException;
                    if (refused == null) throw input.Exception.GetBaseException();
                    Fail(refused.Message);
                    await session.StopAsync();
                    await Task.WhenAny(run, Task.Delay(TimeSpan.FromSeconds(6)));
                    return 5;
                }
                // Standard input ended: wait until the server has relayed what we sent, then close.
                bool relayed;
                lock (pending) { if (pending.Count == 0) allRelayed.TrySetResult(true); }
                relayed = await Task.WhenAny(allRelayed.Task, Task.Delay(TimeSpan.FromSeconds(15))) == allRelayed.Task;
                await session.StopAsync();
                await Task.WhenAny(run, Task.Delay(TimeSpan.FromSeconds(6)));
                if (!relayed)
                {
                    Fail(pending.Count + " message(s) not confirmed by the server");
                    return 4;
                }
                return 0;
            }
            try
            {
                await run;
            }
            catch (LoginException e)
            {
                Fail("login refused: " + e.Code + ": " + e.Message);
                return e.Code == "invalid_credentials" || e.Code == "too_many_attempts" ? 3 : 4;
            }
            catch (ProtocolVersionException e)
            {
                Fail(e.Message);
                return 6;
            }
            catch (Exception e) when (e is System.Net.Http.HttpRequestException || e is System.Net.WebSockets.WebSocketException
                                      || e is IOException || e is ConnectionClosedException)
            {
                Fail("cannot connect: " + Describe(e));
                return 4;
            }
            return lastClose == 1000 || lastClose == 1001 ? 0 : 4;
        }

        static async Task SendTracked(ChatSession session, string room, string text, LinkedList<string> pending)
        {
            lock (pending) pending.AddLast(text);
            await session.SendMessageAsync(room, text);
        }

        static void Handle(ChatEvent e, string me, string mainRoom, LinkedList<string> pending,
                           TaskCompletionSource<bool> allRelayed, TaskCompletionSource<bool> firstJoined)
        {
            var message = e as NewMessage;
            if (message != null)
            {
                ChatMessage m = message.Message;
                Print("new_message " + m.Room + " " + m.From + ": " + Inert(m.Text));
                if (m.From == me && m.Room == mainRoom)
                {
                    lock (pending)
                    {
                        if (pending.Count > 0 && pending.First.Value == m.Text) pending.RemoveFirst();
                        if (pending.Count == 0) allRelayed.TrySetResult(true);
                    }
                }
                return;
            }
            var joined = e as Joined;
            if (joined != null)
            {
                Print("joined " + joined.Room + " " + string.Join(",", joined.Members));
                if (joined.Room == mainRoom) firstJoined.TrySetResult(true);
                return;
            }
            var left = e as Left;
            if (left != null) { Print("left " + left.Room); return; }
            var mj = e as MemberJoined;
            if (mj != null) { Print("member_joined " + mj.Room + " " + mj.User); return; }
            var ml = e as MemberLeft;
            if (ml != null) { Print("member_left " + ml.Room + " " + ml.User); return; }
            var list = e as RoomList;
            if (list != null)
            {
                var parts = new List<string>();
                foreach (RoomInfo r in list.Rooms) parts.Add(r.Name + ":" + r.Members);
                Print("room_list " + string.Join(" ", parts));
                return;
            }
            var error = e as ServerError;
            if (error != null)
            {
                Print("error " + error.Code + " " + Inert(error.Message));
                // Only join_room answers these: joining the rooms failed, so nothing can be sent.
                if (error.Code == "invalid_room_name" || error.Code == "too_many_rooms")
                    firstJoined.TrySetException(new RefusedException("the server refused to join: " + error.Message));
                return;
            }
            Print("ignored " + Inert(e.Type)); // an event type newer than this client
        }

        /// <summary>Received text is shown inert: control characters become visible symbols
        /// (U+2400 block), so they cannot act on a terminal or break the one-line format.</summary>
        static string Inert(string text)
        {
            if (text == null) return "";
            var b = new StringBuilder(text.Length);
            foreach (char c in text)
            {
                if (c < 0x20) b.Append((char)(0x2400 + c));
                else if (c == 0x7f) b.Append('\u2421');
                else if (c >= 0x80 && c < 0xa0) b.Append('\ufffd');
                else b.Append(c);
            }
            return b.ToString();
        }

        sealed class RefusedException : Exception
        {
            public RefusedException(string message) : base(message) { }
        }

        static string Describe(Exception e)
        {
            var inner = e;
            while (inner.InnerException != null) inner = inner.InnerException;
            return inner == e ? e.Message : e.Message + " (" + inner.Message + ")";
        }
    }
}
