export * from "./client.js";
export * from "./webhooks.js";
export * from "./proof.js";
export type { components, paths, webhooks } from "./schema.js";
