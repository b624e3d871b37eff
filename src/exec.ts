/**
 * execa, loaded on first use. It is a twentieth of a second of module loading that the MCP
 * server's start-up (bench/coldstart.ts) would otherwise pay before answering tools/list.
 */
type ExecaModule = typeof import('execa');
let execaModule: Promise<ExecaModule> | undefined;

export function loadExeca(): Promise<ExecaModule> {
  return (execaModule ??= import('execa'));
}
