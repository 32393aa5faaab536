import { finished, type Readable } from 'node:stream';

export interface EachPieceOptions {
  /** Destroy the source when `take` fails (as leaving a for-await loop does); off, it is left paused. */
  destroyOnFailure?: boolean;
}

/**
 * Hands each piece of `source` to `take` as it arrives, pausing the stream only while a promise that
 * `take` returned is pending; resolves at the end of the stream, rejects on its error, on a close before
 * its end, or on `take`'s failure. Not a for-await loop: its promise per piece cost a bare Node server
 * half again as much CPU per GiB of request body (0.92 against 0.60 s), and a request body arrives in
 * ~64 KiB pieces.
 */
export function eachPiece(
  source: Readable,
  take: (piece: Buffer) => Promise<void> | undefined,
  { destroyOnFailure = true }: EachPieceOptions = {},
): Promise<void> {
  return new Promise((resolve, reject) => {
    let waiting = false;
    let ended = false;
    let failure: { error: unknown } | null = null;
    let settled = false;
    // never settles while a piece's promise is pending: the caller may free what that write uses
    const settleWhenIdle = () => {
      if (settled || waiting || (!ended && !failure)) return;
      settled = true;
      source.off('data', onData);
      stopWatching();
      if (!failure) return resolve();
      if (destroyOnFailure) source.destroy();
      else source.pause();
      reject(failure.error);
    };
    const fail = (error: unknown) => {
      failure ??= { error };
      source.pause();
      settleWhenIdle();
    };
    const onData = (piece: Buffer) => {
      if (failure) return;
      let pending: Promise<void> | undefined;
      try {
        pending = take(piece);
      } catch (error) {
        return fail(error);
      }
      if (!pending) return;
      waiting = true;
      source.pause();
      pending.then(
        () => {
          waiting = false;
          if (!failure && !ended) source.resume();
          settleWhenIdle();
        },
        (error: unknown) => {
          waiting = false;
          fail(error);
        },
      );
    };
    // finished() also reports a stream that failed or closed before we came (a cut multipart body's file
    // part); its end may come while the last piece's promise is pending, and then waits for it
    const stopWatching = finished(source, { writable: false }, (error) => {
      if (error) return fail(error);
      ended = true;
      settleWhenIdle();
    });
    source.on('data', onData);
  });
}
