import { createContext, useContext } from "react";
import { NavLink, Outlet } from "react-router";
import { useTheme, type Theme } from "../theme";
import { logout, signedIn } from "../api/session";

const ThemeContext = createContext<Theme>("light");
export const useCurrentTheme = () => useContext(ThemeContext);

const PAGES = [
  ["traces", "Traces"],
  ["cost", "Cost"],
  ["latency", "Latency"],
  ["quality", "Quality"],
  ["breaches", "Breaches"],
] as const;

export function Layout() {
  const [theme, toggleTheme] = useTheme();
  return (
    <ThemeContext.Provider value={theme}>
      <div className="app">
        <header className="topbar">
          <span className="brand">genai-collector</span>
          <nav>
            {PAGES.map(([path, title]) => (
              <NavLink key={path} to={`/${path}`}>
                {title}
              </NavLink>
            ))}
          </nav>
          <span className="spacer" />
          <button onClick={toggleTheme} title="Switch between light and dark" data-testid="theme-toggle">
            {theme === "dark" ? "☀ Light" : "☾ Dark"}
          </button>
          {signedIn() && (
            <button onClick={() => void logout()} title="End this browser's session" data-testid="sign-out">
              Sign out
            </button>
          )}
        </header>
        <Outlet />
      </div>
    </ThemeContext.Provider>
  );
}
