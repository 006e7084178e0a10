// chat-client: a console program on top of the Chat.Client library.
//
//   chat-client --server URL --user NAME --room ROOM [--room ROOM ...] [options]
//
// Joins the rooms, prints every event as one line on standard output (Output.cs), and sends
// each non-blank line of standard input as a message to the first room; `/history` pages
// back. See README.md.

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

Standard input: a line is a message to the first room; /history [LIMIT] asks for the
page of older messages; //TEXT sends /TEXT.

Output, one line per event: login password|session | connected USER protocol N |
joined ROOM A,B LAST_SEQ EPOCH | message ROOM SEQ FROM: TEXT | ack ROOM SEQ CLIENT_ID |
history_gap ROOM FROM TO | epoch_changed ROOM | history_start ROOM | left ROOM |
member_joined ROOM USER | member_left ROOM USER | room_list NAME:COUNT ... |
error CODE MESSAGE (for REQUEST) | closed CODE REASON | reconnecting MS WHY | ignored TYPE

Exit codes: 0 done (stdin ended and every message was acknowledged and seen, or the server
closed with 1000/1001 under --exit-on-close), 1 local problem, 2 usage, 3 login refused,
4 server unreachable at start (or untrusted), connection lost under --exit-on-close, or
messages not delivered; 5 the server refused to join a room (invalid name, too many rooms);
6 protocol version not supported. Once connected, it reconnects.";

        /// <summary>How long the end of input waits for the messages sent to be confirmed.</summary>
        static readonly TimeSpan SettleTimeout = TimeSpan.FromSeconds(30);
        /// <summary>How long a stop waits for the session to finish its close handshake.</summary>
        static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(6);

        static Output output;

        public static int Main(string[] args)
        {
            // UTF-8 both ways whatever the locale (Mono follows LANG; a test has none).
            output = new Output(new StreamWriter(System.Console.OpenStandardOutput(), new UTF8Encoding(false)));
            int code;
            try
            {
                code = Run(args).GetAwaiter().GetResult();
            }
            catch (Exception e)
            {
                output.Fail(e.Message);
                code = 1;
            }
            return ProcessExit.Now(code);
        }

        /// <summary>The command line, parsed.</summary>
        sealed class Options
        {
            public string Server = Environment.GetEnvironmentVariable("CHAT_SERVER") ?? "http://127.0.0.1:8080";
            public string User = Environment.GetEnvironmentVariable("CHAT_USER");
            public string PasswordEnv = "CHAT_PASSWORD";
            public readonly List<string> Rooms = new List<string>();
            public readonly List<string> Sends = new List<string>();
            public bool ReadStdin = true;
            public bool ExitOnClose;
        }

        /// <summary>Parses <paramref name="args"/>; null after printing help; throws ArgumentException.</summary>
        static Options Parse(string[] args)
        {
            var o = new Options();
            for (int i = 0; i < args.Length; i++)
            {
                string arg = args[i];
                Func<string> value = () =>
                {
                    if (i + 1 >= args.Length) throw new ArgumentException(arg + " needs a value");
                    return args[++i];
                };
                switch (arg)
                {
                    case "--server": o.Server = value(); break;
                    case "--user": o.User = value(); break;
                    case "--password-env": o.PasswordEnv = value(); break;
                    case "--room": o.Rooms.Add(value()); break;
                    case "--send": o.Sends.Add(value()); break;
                    case "--no-stdin": o.ReadStdin = false; break;
                    case "--exit-on-close": o.ExitOnClose = true; break;
                    case "-h": case "--help": return null;
                    default: throw new ArgumentException("unknown argument " + arg);
                }
            }
            return o;
        }

        static async Task<int> Run(string[] args)
        {
            Options o;
            try { o = Parse(args); }
            catch (ArgumentException e) { output.Fail(e.Message + "\n" + Usage); return 2; }
            if (o == null) { output.Print(Usage); return 0; }
            string password = Environment.GetEnvironmentVariable(o.PasswordEnv);
            if (string.IsNullOrEmpty(o.User) || o.Rooms.Count == 0 || string.IsNullOrEmpty(password))
            {
                output.Fail((string.IsNullOrEmpty(o.User) ? "--user is required" : o.Rooms.Count == 0 ? "at least one --room is required"
                      : "no password: set " + o.PasswordEnv) + "\n" + Usage);
                return 2;
            }
            ServerUrl url;
            try { url = new ServerUrl(o.Server); }
            catch (ArgumentException e) { output.Fail(e.Message); return 2; }

            var session = new ChatSession(new ChatSessionOptions
            {
                Server = url,
                User = o.User,
                Password = password,
                Reconnect = !o.ExitOnClose,
            });
            string mainRoom = o.Rooms[0];
            var joinRefused = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
            int lastClose = 0;
            session.Events += e =>
            {
                output.Show(e);
                var closed = e as Closed;
                if (closed != null) lastClose = closed.Code;
                // A join refused for good: nothing can be sent to that room.
                var error = e as ServerError;
                if (error != null && error.Request != null && error.Request.Type == "join_room"
                    && (error.Code == "invalid_room_name" || error.Code == "too_many_rooms"))
                    joinRefused.TrySetResult("the server refused to join " + error.Request.Room + ": " + error.Message);
            };
            foreach (string room in o.Rooms) session.Join(room);

            Task run = session.RunAsync(CancellationToken.None);

            // Ctrl+C / SIGINT: close properly, then end the session on the server.
            System.Console.CancelKeyPress += (sender, e) =>
            {
                e.Cancel = true;
                session.StopAsync().Wait(StopTimeout);
            };

            Task input = Task.Run(() => ReadInputAsync(session, mainRoom, o));
            try
            {
                Task first = await Task.WhenAny(run, input, joinRefused.Task);
                if (first == joinRefused.Task)
                {
                    output.Fail(joinRefused.Task.Result);
                    await StopAsync(session, run);
                    return 5;
                }
                if (first == input && !run.IsCompleted)
                {
                    if (input.IsFaulted) throw input.Exception.GetBaseException();
                    // Standard input ended: wait until what was sent is acknowledged and seen, then close.
                    Task settled = session.WhenSettledAsync();
                    Task done = await Task.WhenAny(settled, run, Task.Delay(SettleTimeout));
                    if (done != run)
                    {
                        await StopAsync(session, run);
                        if (done != settled)
                        {
                            output.Fail(session.Unsettled + " message(s) not confirmed by the server");
                            return 4;
                        }
                        if (session.Undelivered > 0)
                        {
                            output.Fail(session.Undelivered + " message(s) refused by the server");
                            return 4;
                        }
                        return 0;
                    }
                }
                return await Outcome(run, () => lastClose);
            }
            finally
            {
                // Every way out ends the session on the server: nobody will use it again.
                await session.LogoutAsync();
            }
        }

        static async Task StopAsync(ChatSession session, Task run)
        {
            await session.StopAsync();
            await Task.WhenAny(run, Task.Delay(StopTimeout));
        }

        /// <summary>The exit code once the session ended on its own.</summary>
        static async Task<int> Outcome(Task run, Func<int> lastClose)
        {
            try
            {
                await run;
            }
            catch (ApiException e)
            {
                output.Fail("login refused: " + e.Code + ": " + e.Message);
                return e.Code == "invalid_credentials" || e.Code == "too_many_attempts" ? 3 : 4;
            }
            catch (ProtocolVersionException e)
            {
                output.Fail(e.Message);
                return 6;
            }
            catch (Exception e) when (e is System.Net.Http.HttpRequestException || e is System.Net.WebSockets.WebSocketException
                                      || e is IOException || e is ConnectionClosedException)
            {
                output.Fail("cannot connect: " + Describe(e));
                return 4;
            }
            int code = lastClose();
            return code == 1000 || code == 1001 ? 0 : 4;
        }

        /// <summary>Sends the --send texts, then reads standard input to its end (never, with --no-stdin).</summary>
        static async Task ReadInputAsync(ChatSession session, string room, Options o)
        {
            foreach (string text in o.Sends) session.Send(room, text);
            if (!o.ReadStdin)
            {
                await Task.Delay(Timeout.Infinite);
                return;
            }
            var reader = new StreamReader(System.Console.OpenStandardInput(), new UTF8Encoding(false));
            string line;
            while ((line = await reader.ReadLineAsync()) != null)
            {
                if (line.Trim().Length == 0) continue; // the server would answer empty_message
                if (line.StartsWith("//")) { session.Send(room, line.Substring(1)); continue; }
                if (!line.StartsWith("/")) { session.Send(room, line); continue; }
                Command(session, room, line);
            }
        }

        static void Command(ChatSession session, string room, string line)
        {
            string[] words = line.Split(new[] { ' ' }, StringSplitOptions.RemoveEmptyEntries);
            if (words[0] != "/history")
            {
                output.Fail("unknown command " + words[0] + " (to send a line that starts with /, write //)");
                return;
            }
            int limit = 0;
            if (words.Length > 2 || (words.Length == 2 && (!int.TryParse(words[1], out limit) || limit < 1)))
            {
                output.Fail("usage: /history [LIMIT], LIMIT a positive number");
                return;
            }
            switch (session.RequestHistory(room, words.Length == 2 ? limit : (int?)null))
            {
                case HistoryRequestResult.AtStart:
                    output.Show(new HistoryStart { Room = room });
                    break;
                case HistoryRequestResult.NotJoined:
                    output.Fail("/history: " + room + " is not joined right now; try again once it is");
                    break;
                case HistoryRequestResult.Pending:
                    output.Fail("/history: a page of " + room + " is already on its way");
                    break;
            }
        }

        static string Describe(Exception e)
        {
            var inner = e;
            while (inner.InnerException != null) inner = inner.InnerException;
            return inner == e ? e.Message : e.Message + " (" + inner.Message + ")";
        }
    }
}
