// How the console program ends its process.

using System;
using System.Runtime.InteropServices;

namespace Chat.Client
{
    /// <summary>Ends the process with an exit code once everything is written.</summary>
    /// <remarks>Mono's runtime shutdown (after Main returns, or Environment.Exit) can deadlock
    /// while it stops the thread pool: on a loaded machine about one exit in four of
    /// <c>--room "no spaces"</c> hung for good with every thread waiting on a futex, and a
    /// program that never exits is a script that never finishes. Nothing is left for that
    /// shutdown to do once the session is closed, logged out and the output flushed, so the
    /// process exits through libc's <c>_exit</c>. Where there is no libc (Windows), Main
    /// just returns.</remarks>
    internal static class ProcessExit
    {
        [DllImport("libc", EntryPoint = "_exit")]
        static extern void LibcExit(int code);

        /// <summary>Exits with <paramref name="code"/>; returns it only where libc is missing.</summary>
        public static int Now(int code)
        {
            System.Console.Out.Flush();
            System.Console.Error.Flush();
            try { LibcExit(code); }
            catch (DllNotFoundException) { }
            catch (EntryPointNotFoundException) { }
            return code;
        }
    }
}
