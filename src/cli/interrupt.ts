/** Ctrl-C while following: the handler runs once; the returned function removes it. */
export function onSigint(handler: () => void): () => void {
  process.once("SIGINT", handler);
  return () => process.off("SIGINT", handler);
}
