import { useState, type FormEvent } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { login } from "../api/session";

/** Shown instead of the app when a read was refused: takes a read key and logs in with it. */
export function LoginForm() {
  const queryClient = useQueryClient();
  const [key, setKey] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    const message = await login(key);
    setBusy(false);
    setError(message);
    if (message === null) await queryClient.invalidateQueries();
  };

  return (
    <form className="login" onSubmit={submit} data-testid="login-form">
      <h1>genai-collector</h1>
      <label>
        API key with the read scope
        <input
          type="password"
          name="key"
          autoComplete="current-password"
          autoFocus
          required
          value={key}
          onChange={(event) => setKey(event.target.value)}
        />
      </label>
      <button type="submit" disabled={busy || key === ""}>
        Sign in
      </button>
      {error && (
        <p className="login-error" role="alert" data-testid="login-error">
          {error}
        </p>
      )}
    </form>
  );
}
