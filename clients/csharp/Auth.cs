// Getting tickets (docs/protocol.md sections 1 and 2): the password once, then the session it
// gave for every later ticket, and the password again only when the server says the session
// is over (401 invalid_session). A password login costs the server tens of milliseconds of
// CPU; a ticket from a session is one lookup.

using System;
using System.Net;
using System.Threading;
using System.Threading.Tasks;

namespace Chat.Client
{
    /// <summary>How a ticket was obtained.</summary>
    public enum TicketSource
    {
        /// <summary><c>POST /api/login</c> with the password.</summary>
        Password,
        /// <summary><c>POST /api/ticket</c> with the session of an earlier login.</summary>
        Session,
    }

    /// <summary>A one-time ticket for <c>GET /ws</c>; use it at once.</summary>
    public sealed class Ticket
    {
        public readonly string Value;
        public readonly TicketSource Source;

        public Ticket(string value, TicketSource source)
        {
            Value = value;
            Source = source;
        }
    }

    /// <summary>Holds one user's credentials, in memory only: the password (needed again if
    /// the session ends) and the current session. Neither is ever written anywhere.</summary>
    public sealed class Authenticator
    {
        readonly ServerUrl server;
        readonly string user;
        readonly string password;
        /// <summary>The bearer token of the current session; null before the first login, after
        /// the server ended it, and after logout.</summary>
        string session;

        public Authenticator(ServerUrl server, string user, string password)
        {
            this.server = server;
            this.user = user;
            this.password = password;
        }

        /// <summary>Whether a session is held (its value is never shown).</summary>
        public bool HasSession { get { return Volatile.Read(ref session) != null; } }

        /// <summary>A fresh ticket: from the session if one is held, else (or if the server
        /// answers 401 invalid_session) by logging in with the password, keeping the new
        /// session. Other refusals throw <see cref="ApiException"/>.</summary>
        public async Task<Ticket> TicketAsync(CancellationToken ct)
        {
            string held = Volatile.Read(ref session);
            if (held != null)
            {
                try
                {
                    TicketResponse minted = await HttpApi.PostBearerAsync<TicketResponse>(
                        server.TicketUri, held, HttpStatusCode.OK, ct).ConfigureAwait(false);
                    return new Ticket(minted.Ticket, TicketSource.Session);
                }
                catch (ApiException e) when (e.Status == HttpStatusCode.Unauthorized && e.Code == "invalid_session")
                {
                    // Expired, logged out, or ended by newer sessions: only the password helps now.
                    Interlocked.CompareExchange(ref session, null, held);
                }
            }
            TicketResponse login = await HttpApi.PostJsonAsync<LoginRequest, TicketResponse>(
                server.LoginUri, new LoginRequest { Username = user, Password = password }, ct).ConfigureAwait(false);
            // A server older than sessions sends none; then every ticket is a login.
            Volatile.Write(ref session, string.IsNullOrEmpty(login.Session) ? null : login.Session);
            return new Ticket(login.Ticket, TicketSource.Password);
        }

        /// <summary>Ends the session (<c>POST /api/logout</c>), if one is held. A 401 means it
        /// had already ended, which is the same outcome; other failures throw.</summary>
        public async Task LogoutAsync(CancellationToken ct)
        {
            string held = Interlocked.Exchange(ref session, null);
            if (held == null) return;
            try
            {
                await HttpApi.PostBearerAsync<TicketResponse>(server.LogoutUri, held, HttpStatusCode.NoContent, ct)
                    .ConfigureAwait(false);
            }
            catch (ApiException e) when (e.Status == HttpStatusCode.Unauthorized)
            {
            }
        }
    }
}
