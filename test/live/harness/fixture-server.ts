/**
 * Serves a recorded metrics page on a loopback port, standing in for an exporter whose hardware is not here.
 */
import * as http from 'http';
import { freePort } from './prometheus';

export class FixtureServer {
  /** Serves `page` (Prometheus text format 0.0.4) at `path`; anything else is a 404. */
  public static async start(page: string, path = '/metrics'): Promise<FixtureServer> {
    const port = await freePort();
    const state = { page };
    const server = http.createServer((req, res) => {
      const requested = new URL(req.url ?? '/', 'http://localhost').pathname;
      if (requested !== path) {
        res.writeHead(404).end(`only ${path} is served here\n`);
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(state.page);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', resolve);
    });
    return new FixtureServer(server, port, state);
  }

  private constructor(private readonly server: http.Server, public readonly port: number, private readonly state: { page: string }) {}

  /** Serves another page from now on (the next scrape sees it). */
  public setPage(page: string): void {
    this.state.page = page;
  }

  public get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  public async stop(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
