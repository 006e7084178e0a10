// How the console program shows events: one line each on standard output (README.md lists
// the formats). Rendering only: it decides nothing about the session.

using System;
using System.Collections.Generic;
using System.IO;
using System.Text;
using Chat.Client;

namespace Chat.Console
{
    /// <summary>Writes one line per event, flushed at once, from any thread.</summary>
    internal sealed class Output
    {
        readonly object gate = new object();
        readonly TextWriter stdout;

        public Output(TextWriter stdout)
        {
            this.stdout = stdout;
        }

        public void Show(ChatEvent e)
        {
            string line = Line(e);
            if (line != null) Print(line);
        }

        public void Print(string line)
        {
            lock (gate)
            {
                stdout.Write(line);
                stdout.Write('\n');
                stdout.Flush();
            }
        }

        /// <summary>A message for people on standard error.</summary>
        public void Fail(string message)
        {
            lock (gate)
            {
                System.Console.Error.WriteLine("chat-client: " + message);
                System.Console.Error.Flush();
            }
        }

        /// <summary>The line for <paramref name="e"/>; null for events not shown.</summary>
        internal static string Line(ChatEvent e)
        {
            var held = e as MessageHeld;
            if (held != null)
            {
                ChatMessage m = held.Message;
                return "message " + m.Room + " " + m.Seq + " " + Inert(m.From) + ": " + Inert(m.Text);
            }
            var ack = e as Ack;
            if (ack != null) return "ack " + ack.Room + " " + ack.Seq + " " + Inert(ack.ClientId ?? "-");
            var joined = e as Joined;
            if (joined != null)
                return "joined " + joined.Room + " " + Inert(string.Join(",", joined.Members)) + " " + joined.LastSeq + " " + Inert(joined.Epoch);
            var login = e as LoggedIn;
            if (login != null) return login.Source == TicketSource.Session ? "login session" : "login password";
            var welcome = e as Welcome;
            if (welcome != null) return "connected " + Inert(welcome.User) + " protocol " + welcome.ProtocolVersion;
            var gap = e as HistoryGap;
            if (gap != null) return "history_gap " + gap.Room + " " + gap.From + " " + gap.To;
            var epoch = e as EpochChanged;
            if (epoch != null) return "epoch_changed " + epoch.Room;
            var start = e as HistoryStart;
            if (start != null) return "history_start " + start.Room;
            var error = e as ServerError;
            if (error != null)
                return "error " + Inert(error.Code) + " " + Inert(error.Message)
                    + " (for " + (error.Request != null ? error.Request.Type : "unknown") + ")";
            var closed = e as Closed;
            if (closed != null) return "closed " + closed.Code + " " + Inert(closed.Reason);
            var reconnecting = e as Reconnecting;
            if (reconnecting != null) return "reconnecting " + (int)reconnecting.Delay.TotalMilliseconds + "ms " + Inert(reconnecting.Why);
            var left = e as Left;
            if (left != null) return "left " + left.Room;
            var mj = e as MemberJoined;
            if (mj != null) return "member_joined " + mj.Room + " " + Inert(mj.User);
            var ml = e as MemberLeft;
            if (ml != null) return "member_left " + ml.Room + " " + Inert(ml.User);
            var list = e as RoomList;
            if (list != null)
            {
                var parts = new List<string>();
                foreach (RoomInfo r in list.Rooms) parts.Add(r.Name + ":" + r.Members);
                return "room_list " + string.Join(" ", parts);
            }
            return "ignored " + Inert(e.Type); // an event type newer than this client
        }

        /// <summary>Received text is shown inert: control characters become visible symbols
        /// (U+2400 block), so they cannot act on a terminal or break the one-line format.</summary>
        internal static string Inert(string text)
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
    }
}
