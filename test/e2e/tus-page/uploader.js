// What a page of another site does with tus-js-client: upload a File to filestore's /api/tus with the
// user's Bearer token, and resume it after a reload from the upload URL the client kept in localStorage.
/* global tus, seededBytes */

/** The same name, type, size and lastModified after a reload, so tus-js-client finds its stored URL again. */
function seededFile(job) {
  return new File([seededBytes(job.seed, job.size)], job.name, { type: 'application/octet-stream', lastModified: 1700000000000 });
}

/** tus-js-client's options as a page sets them, plus the ones a test turns on in `job.options`. */
function uploadOptions(job, handlers) {
  return {
    endpoint: job.endpoint,
    headers: { Authorization: `Bearer ${job.token}` },
    metadata: { filename: job.name, folder: job.folder },
    chunkSize: 1024 * 1024,
    retryDelays: null,
    ...job.options,
    ...handlers,
  };
}

/** Starts the upload and aborts it once more than `job.abortAfter` of it was sent: resolves with its URL. */
window.uploadAndAbort = (job) =>
  new Promise((resolve, reject) => {
    let aborting = false;
    const upload = new tus.Upload(
      seededFile(job),
      uploadOptions(job, {
        onProgress(sent, total) {
          if (aborting || sent / total <= job.abortAfter) return;
          aborting = true;
          upload.abort().then(() => resolve({ url: upload.url }), reject);
        },
        onSuccess: () => reject(new Error('the upload finished before it could be aborted')),
        onError: reject,
      }),
    );
    upload.start();
  });

/**
 * Uploads the file to its end; with `resume`, as after a reload: a new upload of the same file first
 * looks for the one tus-js-client stored and resumes it. Resolves with how many stored uploads it found,
 * the URL it finished, and the file id the finishing PATCH named.
 */
async function finishUpload(job, { resume }) {
  let fileId = null;
  let settle;
  const finished = new Promise((resolve, reject) => (settle = { resolve, reject }));
  const upload = new tus.Upload(
    seededFile(job),
    uploadOptions(job, {
      onAfterResponse(_request, response) {
        fileId = response.getHeader('Filestore-File-Id') || fileId;
      },
      onSuccess: () => settle.resolve(),
      onError: (error) => settle.reject(error),
    }),
  );
  const previousUploads = resume ? await upload.findPreviousUploads() : [];
  if (previousUploads.length > 0) upload.resumeFromPreviousUpload(previousUploads[0]);
  upload.start();
  await finished;
  return { previousUploads: previousUploads.length, url: upload.url, fileId };
}

window.upload = (job) => finishUpload(job, { resume: false });
window.resumeUpload = (job) => finishUpload(job, { resume: true });

/** An upload the server refuses: what the page learns of the refusal through tus-js-client's onError. */
window.uploadRefusal = (job) =>
  new Promise((resolve, reject) => {
    const upload = new tus.Upload(
      seededFile(job),
      uploadOptions(job, {
        onSuccess: () => reject(new Error('the upload was not refused')),
        onError(error) {
          const response = error.originalResponse;
          resolve({
            message: error.message,
            status: response ? response.getStatus() : null,
            body: response ? response.getBody() : null,
            tusResumable: response ? response.getHeader('Tus-Resumable') : null,
          });
        },
      }),
    );
    upload.start();
  });
