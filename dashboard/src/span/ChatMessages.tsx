import type { ChatMessage, MessagePart } from "./conversation";

/** A conversation as a chat: the prompt's messages, then the model's answer (marked as output). */
export function ChatMessages({ messages }: { messages: ChatMessage[] }) {
  return (
    <div className="chat" data-testid="chat">
      {messages.map((message, index) => (
        <div key={index} className={`message ${message.role}`} data-testid="chat-message">
          <div className="role">
            {message.role}
            {message.output ? " · output" : ""}
            {message.finishReason ? ` · ${message.finishReason}` : ""}
          </div>
          {message.parts.map((part, partIndex) => (
            <Part key={partIndex} part={part} />
          ))}
          {!message.parts.length && <div className="muted">(no content captured)</div>}
        </div>
      ))}
    </div>
  );
}

function Part({ part }: { part: MessagePart }) {
  switch (part.kind) {
    case "text":
      return <div className="text">{part.text}</div>;
    case "tool_call":
      return (
        <div className="tool-call">
          <div>
            call <code>{part.name}</code> {part.id && <span className="muted mono">{part.id}</span>}
          </div>
          <pre>{part.arguments}</pre>
        </div>
      );
    case "tool_result":
      return (
        <div className="tool-call">
          <div>result {part.id && <span className="muted mono">{part.id}</span>}</div>
          <pre>{part.result}</pre>
        </div>
      );
  }
}
