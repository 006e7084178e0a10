// What the client holds of one room (docs/protocol.md sections 4, 5 and 11): which history
// (epoch), which messages (a range of seqs), and where to resume. It decides, for every
// message that arrives, whether it is new; it does no I/O.

using System.Collections.Generic;

namespace Chat.Client
{
    /// <summary>What <see cref="RoomState.ApplyJoined"/> concluded.</summary>
    public sealed class JoinOutcome
    {
        /// <summary>The joined names another history than the one held: what was held is dropped.</summary>
        public bool EpochChanged;
        /// <summary>The epoch held before, when it changed.</summary>
        public string OldEpoch;
        /// <summary>Messages of the joined's history not held before, oldest first.</summary>
        public readonly List<ChatMessage> NewMessages = new List<ChatMessage>();
    }

    /// <summary>One room of a session. Not thread-safe: the session locks around it.</summary>
    /// <remarks>The messages held are the seqs Oldest..Newest. They stay one range because
    /// every way they arrive extends it at one end: a plain join brings the newest ones, live
    /// messages and a resume's backlog continue after Newest (a history_gap only skips
    /// numbers that will never come), and history pages end just below Oldest. So a message
    /// is new exactly when its seq is outside the range, and memory does not grow with the
    /// room's history.</remarks>
    public sealed class RoomState
    {
        public readonly string Name;

        /// <summary>The epoch of the last joined; null before the first.</summary>
        public string Epoch { get; private set; }
        /// <summary>The newest seq known: the since of the next resume.</summary>
        public long Newest { get; private set; }
        /// <summary>The smallest seq held; Newest + 1 while none is.</summary>
        public long Oldest { get; private set; }
        /// <summary>Nothing older is stored: a history page said so, or seq 1 is held.</summary>
        public bool AtStart { get; private set; }
        /// <summary>Joined on the current connection: requests for the room may be sent.</summary>
        public bool Live { get; internal set; }
        /// <summary>A history request is on its way; another would ask for the same page.</summary>
        public bool HistoryPending { get; internal set; }

        public RoomState(string name)
        {
            Name = name;
            Oldest = 1;
        }

        /// <summary>The join to send: a plain join the first time, then a resume after Newest
        /// in the held epoch.</summary>
        public Request JoinRequest()
        {
            return Epoch == null ? Request.Join(Name) : Request.Join(Name, Newest, Epoch);
        }

        /// <summary>Whether message <paramref name="seq"/> is held.</summary>
        public bool Holds(long seq)
        {
            return seq >= Oldest && seq <= Newest;
        }

        /// <summary>A <c>joined</c> for this room. Another epoch than the one held means another
        /// history: everything held is dropped and the room starts again from this joined.</summary>
        public JoinOutcome ApplyJoined(Joined joined)
        {
            var outcome = new JoinOutcome();
            if (Epoch == null || joined.Epoch != Epoch)
            {
                outcome.EpochChanged = Epoch != null;
                outcome.OldEpoch = Epoch;
                Epoch = joined.Epoch;
                // Held range empty, just below the history to come (or, with none, the live
                // messages from last_seq + 1).
                long first = joined.History.Length > 0 ? joined.History[0].Seq : joined.LastSeq + 1;
                Oldest = first;
                Newest = first - 1;
                AtStart = first <= 1;
            }
            else if (joined.LastSeq < Newest)
            {
                // Same history, but the server has fewer messages than were held (its machine
                // lost its last commits, section 11): believe it, or the numbers it gives next
                // would be taken for messages already held.
                Newest = joined.LastSeq;
            }
            foreach (ChatMessage m in joined.History)
            {
                if (Hold(m)) outcome.NewMessages.Add(m);
            }
            return outcome;
        }

        /// <summary>A live message or one of a resume's backlog: true if it is new (and now held).</summary>
        public bool Hold(ChatMessage message)
        {
            if (message.Seq <= Newest) return false;
            if (Oldest > Newest) Oldest = message.Seq; // the first one held
            Newest = message.Seq;
            if (Oldest <= 1) AtStart = true;
            return true;
        }

        /// <summary>Messages From..To will not come: resume after them.</summary>
        public void ApplyGap(HistoryGap gap)
        {
            if (gap.To > Newest)
            {
                if (Oldest > Newest) Oldest = gap.To + 1;
                Newest = gap.To;
            }
        }

        /// <summary>The <c>before</c> of the next history page; null at the start.</summary>
        public long? NextPageBefore()
        {
            if (AtStart) return null;
            return Oldest;
        }

        /// <summary>A <c>history_page</c>: the messages older than those held, oldest first.</summary>
        public List<ChatMessage> ApplyPage(HistoryPage page)
        {
            HistoryPending = false;
            var older = new List<ChatMessage>();
            foreach (ChatMessage m in page.Messages)
            {
                if (m.Seq < Oldest) older.Add(m);
            }
            if (older.Count > 0) Oldest = older[0].Seq;
            // Section 4: a page that is empty, or starts at first_seq, is the beginning.
            if (page.Messages.Length == 0 || !page.FirstSeq.HasValue || page.Messages[0].Seq <= page.FirstSeq.Value || Oldest <= 1)
                AtStart = true;
            return older;
        }
    }
}
