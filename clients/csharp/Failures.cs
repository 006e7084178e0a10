// The ways connecting or staying connected fails, each with what a caller needs to decide
// whether another try can help (docs/protocol.md sections 1, 6 and 7).

using System;
using System.Net;

namespace Chat.Client
{
    /// <summary>An HTTP request (login, ticket, logout) was refused with a status and the
    /// error body of section 2.</summary>
    public sealed class ApiException : Exception
    {
        public readonly HttpStatusCode Status;
        /// <summary>The error body's <c>code</c> (<c>internal</c> when the body was not one).</summary>
        public readonly string Code;
        /// <summary>The <c>Retry-After</c> of a 429, if any.</summary>
        public readonly TimeSpan? RetryAfter;

        public ApiException(HttpStatusCode status, string code, string message, TimeSpan? retryAfter)
            : base(message)
        {
            Status = status;
            Code = code;
            RetryAfter = retryAfter;
        }

        /// <summary>Trying again cannot help: a wrong password, a disabled account, a refused request.</summary>
        public bool IsPermanent
        {
            get
            {
                int status = (int)Status;
                return Code == "invalid_credentials" || Code == "invalid_request" || Code == "account_disabled"
                    || Code == "origin_not_allowed" || Code == "registration_disabled"
                    || (status >= 400 && status < 500 && status != 429 && Code != "invalid_ticket");
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
}
