/**
 * Who verifies an upload: one process at a time, since verifying ends by moving the staged bytes away,
 * and a second verifier would find them gone. A holder that dies loses the lock by itself.
 */
export interface VerificationLock {
  /** The lock on `uploadId`'s verification, or null while another holder has it. */
  tryAcquire(uploadId: string): Promise<VerificationHold | null>;
}

export interface VerificationHold {
  /** Whether the lock is still this holder's (a process frozen past its lease has lost it). */
  held(): Promise<boolean>;
  release(): Promise<void>;
}

/** The embedded profile's: its one API process is every verifier there is, and dies with its locks. */
export class LocalVerificationLock implements VerificationLock {
  private readonly holders = new Set<string>();

  async tryAcquire(uploadId: string): Promise<VerificationHold | null> {
    if (this.holders.has(uploadId)) return null;
    this.holders.add(uploadId);
    let released = false;
    return {
      held: async () => !released,
      release: async () => {
        released = true;
        this.holders.delete(uploadId);
      },
    };
  }
}
