import type { MemberIR, MemberMetadata } from './model.js';

/**
 * What members alike have in common: their port, weight and TLS, and the facts of their provider
 * (path, auth header, model, how the key is given). One frozen object per combination, shared.
 */
export interface MemberShape {
  readonly port: number;
  readonly weight: number;
  readonly tls: boolean;
  readonly provider: string;
  readonly path: string;
  readonly authHeader: string;
  readonly model: string;
  readonly authKind: 'SecretRef';
}

/**
 * The common AI member (a provider, its model, and a key from a Secret; nothing else): the member
 * and its metadata in one object, with what members alike share in a MemberShape. A member and
 * its metadata were two objects of 80 and 112 bytes, 11 MiB at 10,000 Backends' 60,000 members,
 * most of it the same few values over and over; this one is 88 bytes. It reads as a MemberIR
 * whose metadata is itself (the fields the metadata of such a member has, in their order); its
 * JSON and plainMetadata are those of the two plain objects it replaces.
 */
export class CommonAiMember implements MemberIR, MemberMetadata {
  constructor(
    readonly name: string,
    readonly address: string,
    /** The provider's hostname: Host and SNI of the member, and its metadata's hostname. */
    readonly hostname: string,
    /** The Backend's "<namespace>/<name>". */
    readonly backend: string,
    readonly priority: number,
    readonly credential: string,
    readonly secret: string,
    private readonly shape: MemberShape,
  ) {}

  get port(): number {
    return this.shape.port;
  }

  get weight(): number {
    return this.shape.weight;
  }

  get tls(): boolean {
    return this.shape.tls;
  }

  get metadata(): MemberMetadata {
    return this;
  }

  get member(): string {
    return this.name;
  }

  get provider(): string {
    return this.shape.provider;
  }

  get path(): string {
    return this.shape.path;
  }

  get authHeader(): string {
    return this.shape.authHeader;
  }

  get model(): string {
    return this.shape.model;
  }

  get authKind(): 'SecretRef' {
    return this.shape.authKind;
  }

  /** The metadata as the plain object it stands for, keys in the translator's order. */
  plainMetadata(): MemberMetadata {
    return {
      backend: this.backend,
      member: this.name,
      provider: this.provider,
      path: this.path,
      hostname: this.hostname,
      authHeader: this.authHeader,
      model: this.model,
      priority: this.priority,
      authKind: this.authKind,
      credential: this.credential,
      secret: this.secret,
    };
  }

  /** The plain MemberIR it stands for (JSON.stringify, and so every dump of the IR). */
  toJSON(): MemberIR {
    return { name: this.name, address: this.address, port: this.port, hostname: this.hostname, weight: this.weight, tls: this.tls, metadata: this.plainMetadata() };
  }
}

/** A member's metadata as a plain object (own properties, the translator's key order), whatever its class. */
export function plainMetadata(m: MemberIR): MemberMetadata {
  return m instanceof CommonAiMember ? m.plainMetadata() : m.metadata;
}

/** Shapes met lately, newest first: a configuration has few, and members alike come in a row. */
const recentShapes: MemberShape[] = [];
const RECENT_SHAPES = 16;

function sameShape(a: MemberShape, b: MemberShape): boolean {
  return a.port === b.port && a.weight === b.weight && a.tls === b.tls && a.provider === b.provider && a.path === b.path && a.authHeader === b.authHeader && a.model === b.model && a.authKind === b.authKind;
}

/** The shared, frozen copy of `shape`: a recent equal one, else `shape` itself (frozen from now on). */
export function memberShape(shape: MemberShape): MemberShape {
  for (let i = 0; i < recentShapes.length; i++) {
    const known = recentShapes[i] as MemberShape;
    if (!sameShape(known, shape)) continue;
    if (i > 0) {
      recentShapes.splice(i, 1);
      recentShapes.unshift(known);
    }
    return known;
  }
  recentShapes.unshift(Object.freeze(shape));
  if (recentShapes.length > RECENT_SHAPES) recentShapes.length = RECENT_SHAPES;
  return shape;
}
