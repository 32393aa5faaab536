import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { AppError } from '../errors.js';

export interface AccessClaims {
  userId: string;
  username: string;
}

/** How many verified tokens are remembered; past it the oldest is forgotten (and verified again if seen). */
const MAX_REMEMBERED = 10_000;

/** Short-lived HS256 JWTs; the refresh token is what lasts. */
export class AccessTokens {
  /**
   * Tokens already verified, with their expiry. A verification is a WebCrypto HMAC, i.e. a thread-pool
   * round trip (~0.5 ms on the instant-upload path, twice per upload); a token's validity depends only on
   * its bytes and the clock, so the answer can be kept until it expires.
   */
  private readonly verified = new Map<string, { claims: AccessClaims; expiresAtMs: number }>();

  constructor(
    private readonly key: Uint8Array,
    readonly ttlSeconds: number,
    /** Whether a user still exists: a token signed for one that does not (deleted, or another database under the same key) must not get in. */
    private readonly userExists: (userId: string) => Promise<boolean>,
  ) {}

  sign(claims: AccessClaims): Promise<string> {
    return new SignJWT({ username: claims.username, typ: 'access' })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(claims.userId)
      .setIssuedAt()
      .setExpirationTime(`${this.ttlSeconds}s`)
      .sign(this.key);
  }

  async verify(token: string): Promise<AccessClaims> {
    const known = this.verified.get(token);
    if (known) {
      // jose's rule: valid while the clock is before exp
      if (Date.now() < known.expiresAtMs) return known.claims;
      this.verified.delete(token);
      throw new AppError('token_expired');
    }
    const { claims, expiresAtMs } = await this.verifySignature(token);
    // once per token, then remembered with it: its writes would otherwise fail on the users foreign key (500).
    // Outside verifySignature, so a database outage answers 503, not 401.
    if (!(await this.userExists(claims.userId))) throw new AppError('unauthorized', 'The user of this access token does not exist.');
    if (this.verified.size >= MAX_REMEMBERED) this.verified.delete(this.verified.keys().next().value!);
    this.verified.set(token, { claims, expiresAtMs });
    return claims;
  }

  private async verifySignature(token: string): Promise<{ claims: AccessClaims; expiresAtMs: number }> {
    try {
      const { payload } = await jwtVerify(token, this.key, { algorithms: ['HS256'], requiredClaims: ['exp'] });
      if (payload.typ !== 'access' || typeof payload.sub !== 'string' || typeof payload.username !== 'string') {
        throw new AppError('unauthorized', 'The access token is not valid.');
      }
      return { claims: { userId: payload.sub, username: payload.username }, expiresAtMs: payload.exp! * 1000 };
    } catch (error) {
      if (error instanceof AppError) throw error;
      if (error instanceof joseErrors.JWTExpired) throw new AppError('token_expired');
      throw new AppError('unauthorized', 'The access token is not valid.');
    }
  }
}
