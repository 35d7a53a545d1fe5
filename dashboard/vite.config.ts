/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// Built into the Python package (git-ignored), served by the query server at "/".
// base "./": every asset URL is relative, so the app works under any path prefix.
export default defineConfig({
  base: "./",
  plugins: [react()],
  build: {
    outDir: "../collector/query/ui",
    emptyOutDir: true,
    chunkSizeWarningLimit: 1000,
  },
  server: {
    proxy: { "/api": { target: "http://127.0.0.1:16686", ws: true } },
  },
  test: {
    environment: "node", // component tests opt into jsdom with a @vitest-environment comment
    include: ["src/**/*.test.{ts,tsx}"],
  },
});
