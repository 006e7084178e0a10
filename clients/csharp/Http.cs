// The server's address and its HTTP endpoints (docs/protocol.md sections 1 and 2): how a
// request is sent and how a refusal becomes an ApiException. What to ask and when is Auth.cs.

using System;
using System.Net;
using System.Net.Http;
using System.Net.Http.Headers;
using System.Runtime.Serialization;
using System.Threading;
using System.Threading.Tasks;

namespace Chat.Client
{
    /// <summary>A server base URL: http, https, ws or wss; the other scheme is derived.</summary>
    public sealed class ServerUrl
    {
        /// <summary>http(s)://host:port</summary>
        public readonly Uri Http;
        /// <summary>ws(s)://host:port</summary>
        public readonly Uri Ws;

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

        public Uri LoginUri { get { return Api("login"); } }
        public Uri TicketUri { get { return Api("ticket"); } }
        public Uri LogoutUri { get { return Api("logout"); } }

        Uri Api(string name) { return new Uri(Http.AbsoluteUri.TrimEnd('/') + "/api/" + name); }

        public Uri SocketUri(string ticket)
        {
            // The ticket is opaque: escape it rather than assume it is hex.
            return new Uri(Ws.AbsoluteUri.TrimEnd('/') + "/ws?ticket=" + Uri.EscapeDataString(ticket));
        }

        public override string ToString() { return Http.ToString(); }
    }

    /// <summary>POSTs to the JSON API. A status other than the expected one throws
    /// <see cref="ApiException"/> with the error body's code; network failures throw as
    /// HttpClient does (HttpRequestException, or OperationCanceledException on a timeout).</summary>
    internal static class HttpApi
    {
        static readonly HttpClient Client = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };

        /// <summary>POST with a JSON body; the 200 answer read as <typeparamref name="T"/>.</summary>
        public static Task<T> PostJsonAsync<TBody, T>(Uri uri, TBody body, CancellationToken ct) where T : class
        {
            var request = new HttpRequestMessage(HttpMethod.Post, uri);
            request.Content = new ByteArrayContent(Json.Write(body));
            // Exactly application/json, as section 2 asks.
            request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            return SendAsync<T>(request, HttpStatusCode.OK, ct);
        }

        /// <summary>POST without a body, authorised by a session; a 204 answer gives null.</summary>
        public static Task<T> PostBearerAsync<T>(Uri uri, string session, HttpStatusCode expected, CancellationToken ct) where T : class
        {
            var request = new HttpRequestMessage(HttpMethod.Post, uri);
            // The session goes only in this header, never in a URL (section 2, "About sessions").
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", session);
            return SendAsync<T>(request, expected, ct);
        }

        static async Task<T> SendAsync<T>(HttpRequestMessage request, HttpStatusCode expected, CancellationToken ct) where T : class
        {
            using (request)
            using (var response = await Client.SendAsync(request, ct).ConfigureAwait(false))
            {
                byte[] answer = await response.Content.ReadAsByteArrayAsync().ConfigureAwait(false);
                if (response.StatusCode != expected) throw Failure(response, answer);
                return expected == HttpStatusCode.NoContent ? null : Json.Read<T>(answer);
            }
        }

        static ApiException Failure(HttpResponseMessage response, byte[] answer)
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
            return new ApiException(response.StatusCode, code, message, retryAfter);
        }
    }
}
