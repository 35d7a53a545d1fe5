import { useEffect, useRef, useState } from "react";
import { apiUrl } from "../api/client";
import type { LiveMessage } from "./messages";

export type LiveStatus = "connecting" | "open" | "closed";

/** Subscribe to the live feed; reconnects with back-off and resumes breaches from the last cursor. */
export function useLiveFeed(onMessage: (message: LiveMessage) => void): LiveStatus {
  const [status, setStatus] = useState<LiveStatus>("connecting");
  const handler = useRef(onMessage);
  handler.current = onMessage;

  useEffect(() => {
    let socket: WebSocket | null = null;
    let retry = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let stopped = false;
    let breachCursor: string | null = null;

    const connect = () => {
      const url = apiUrl("api/v1/live", breachCursor ? { breaches_after: breachCursor } : {});
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      setStatus("connecting");
      socket = new WebSocket(url);
      socket.onopen = () => {
        retry = 0;
        setStatus("open");
      };
      socket.onmessage = (event) => {
        const message = JSON.parse(event.data as string) as LiveMessage;
        if (message.type === "breaches") breachCursor = message.cursor;
        handler.current(message);
      };
      socket.onclose = () => {
        setStatus("closed");
        if (stopped) return;
        timer = setTimeout(connect, Math.min(10_000, 500 * 2 ** retry++));
      };
    };
    connect();
    return () => {
      stopped = true;
      clearTimeout(timer);
      socket?.close();
    };
  }, []);
  return status;
}
