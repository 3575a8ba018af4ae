import net from 'node:net';
import type { AddressInfo } from 'node:net';

/** How the connection that sends the trigger stalls. */
export interface StallPlan {
  /** Text in the client's bytes that starts the stall (a statement: 'COPY', 'COMMIT'). */
  readonly trigger: string;
  /** The bytes that hold the trigger still reach PostgreSQL (it runs the statement); else they are held too. */
  readonly forwardTrigger: boolean;
  /**
   * When the gateway closes its side of the stalled connection, the proxy closes PostgreSQL's side
   * too (a proxy or a load balancer that notices); else PostgreSQL's side stays open (a partition).
   */
  readonly closeServerWhenClientCloses: boolean;
  /** After the gateway closed its side, forward what was held (the network came back) after this many ms. */
  readonly healAfterClientCloseMs?: number;
}

/** What happened to the stalled connection, in Date.now() milliseconds. */
export interface StallRecord {
  readonly stalledAt: number;
  clientClosedAt?: number;
  healedAt?: number;
}

/**
 * A TCP proxy to PostgreSQL that can make one connection stop answering without closing it: from the
 * trigger on, nothing is forwarded in either direction (the bytes are held), and the proxy's own
 * kernel keeps acknowledging them, as a middlebox that lost its way would. Every other connection,
 * and every new one, is forwarded normally.
 */
export class StallingProxy {
  private plan: StallPlan | undefined;
  readonly stalls: StallRecord[] = [];
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  static async start(target: URL): Promise<StallingProxy> {
    const relays: { to?: StallingProxy } = {};
    const server = net.createServer((client) => relays.to?.relay(client, target));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    relays.to = new StallingProxy(server, (server.address() as AddressInfo).port);
    return relays.to;
  }

  /** `url` with its host replaced by the proxy's. */
  via(url: string): string {
    const proxied = new URL(url);
    proxied.host = `127.0.0.1:${this.port}`;
    return proxied.toString();
  }

  /** The next connection that sends `plan.trigger` stalls. */
  stallNext(plan: StallPlan): void {
    this.plan = plan;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private relay(client: net.Socket, target: URL): void {
    const server = net.connect(Number(target.port || 5432), target.hostname);
    this.sockets.add(client).add(server);
    let stall: StallRecord | undefined;
    const heldForServer: Buffer[] = [];
    const heldForClient: Buffer[] = [];
    let plan: StallPlan | undefined;

    client.on('data', (data) => {
      if (stall === undefined && this.plan !== undefined && data.includes(this.plan.trigger)) {
        plan = this.plan;
        this.plan = undefined;
        stall = { stalledAt: Date.now() };
        this.stalls.push(stall);
        if (plan.forwardTrigger) server.write(data);
        else heldForServer.push(data);
        return;
      }
      if (stall !== undefined && stall.healedAt === undefined) heldForServer.push(data);
      else server.write(data);
    });
    server.on('data', (data) => {
      if (stall !== undefined && stall.healedAt === undefined) heldForClient.push(data);
      else client.write(data);
    });

    client.on('close', () => {
      this.sockets.delete(client);
      if (stall === undefined || plan === undefined) {
        server.destroy();
        return;
      }
      stall.clientClosedAt = Date.now();
      if (plan.closeServerWhenClientCloses) server.destroy();
      const healAfter = plan.healAfterClientCloseMs;
      if (healAfter !== undefined) {
        setTimeout(() => {
          if (stall === undefined) return;
          stall.healedAt = Date.now();
          for (const data of heldForServer.splice(0)) if (!server.destroyed) server.write(data);
        }, healAfter);
      }
    });
    server.on('close', () => {
      this.sockets.delete(server);
      // A stalled connection shows nothing of PostgreSQL's side to the gateway, not even its end.
      if (stall === undefined || stall.healedAt !== undefined) client.destroy();
    });
    // 'close' follows every error, and decides.
    client.on('error', () => undefined);
    server.on('error', () => undefined);
  }
}
