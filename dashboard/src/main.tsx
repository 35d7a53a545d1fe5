import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { createBrowserRouter, Navigate, RouterProvider } from "react-router";
import "uplot/dist/uPlot.min.css";
import "./styles.css";
import { Layout } from "./components/Layout";
import { TracesPage } from "./pages/TracesPage";
import { TracePage } from "./pages/TracePage";
import { CostPage } from "./pages/CostPage";
import { LatencyPage } from "./pages/LatencyPage";
import { QualityPage } from "./pages/QualityPage";
import { BreachesPage } from "./pages/BreachesPage";
import { LoginForm } from "./components/LoginForm";
import { ApiError } from "./api/client";
import { useAccess } from "./api/session";

/** The server puts a <base href> on index.html that leads to the app's root, whatever prefix a proxy adds. */
function basename(): string {
  if (!document.querySelector("base")) return "/";
  return new URL(document.baseURI).pathname.replace(/\/$/, "") || "/";
}

const router = createBrowserRouter(
  [
    {
      element: <Layout />,
      children: [
        { index: true, element: <Navigate to="/traces" replace /> },
        { path: "traces", element: <TracesPage /> },
        { path: "traces/:traceId", element: <TracePage /> },
        { path: "cost", element: <CostPage /> },
        { path: "latency", element: <LatencyPage /> },
        { path: "quality", element: <QualityPage /> },
        { path: "breaches", element: <BreachesPage /> },
        { path: "*", element: <p className="notice">No such page.</p> },
      ],
    },
  ],
  { basename: basename() },
);

const queryClient = new QueryClient({
  defaultOptions: {
    queries: {
      staleTime: 10_000,
      refetchOnWindowFocus: false,
      // a refused read is not retried: it shows the login form
      retry: (failures, error) => failures < 1 && !(error instanceof ApiError && error.status === 401),
    },
  },
});

/** The app, or the login form while the query server refuses reads. */
function App() {
  return useAccess() === "login" ? <LoginForm /> : <RouterProvider router={router} />;
}

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <QueryClientProvider client={queryClient}>
      <App />
    </QueryClientProvider>
  </StrictMode>,
);
