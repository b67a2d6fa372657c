import * as grpc from '@grpc/grpc-js';
import {
  AuthServiceClient, JobServiceClient, JobState, QueueServiceClient, SubmitJobRequest, msToDuration,
  type CancelJobResponse, type GetJobResponse, type Job, type ListJobsResponse,
  type RetryJobResponse, type SubmitJobResponse, type SubmitJobsResponse, type WatchJobResponse,
} from '@aijob/contracts';
import { AdminApi } from './admin.js';
import { backoffMs, bearer, isServiceError, pause, runUnary, type CallOptions, type Invoke } from './calls.js';
import { Credentials } from './credentials.js';
import { QueuesApi } from './queues.js';
import { DeadLettersApi, UsageApi } from './dead-letters.js';
import { abortError, CancelledError, FailedPreconditionError, toApiError, UnauthenticatedError, UnavailableError } from './errors.js';

export type { CallOptions } from './calls.js';

export interface AijobClientOptions {
  /** host:port of the job service (and queue service, unless `queueAddress`). */
  address: string;
  /** Scheduler address for queue calls; default: `address`. */
  queueAddress?: string;
  /** An API key; exchanged for short-lived JWTs when `authAddress` is given. */
  apiKey?: string;
  /** A JWT to use as is. */
  token?: string;
  /** Auth service address: needed for `admin` calls; with `apiKey`, calls carry JWTs refreshed before expiry. */
  authAddress?: string;
  /** With `authAddress`: exchange the API key for JWTs (default true). */
  exchangeTokens?: boolean;
  /** TLS: true for the system roots, or your own credentials. Default: plaintext. */
  tls?: boolean | grpc.ChannelCredentials;
  /** Deadline of unary calls in ms, retries included; also how long a watch keeps re-opening a broken stream. Default 30 000. */
  deadlineMs?: number;
  /** Attempts of safe unary calls on UNAVAILABLE. Default 4. */
  maxAttempts?: number;
  /** grpc-js client interceptors, run on every call (logging, tracing, metrics). */
  interceptors?: grpc.Interceptor[];
}

/** What to run. Only `type` is required. */
export interface SubmitOptions {
  type: string;
  input?: Record<string, unknown>;
  queue?: string;
  /** -1000..1000; higher first. */
  priority?: number;
  /** A repeat within 24 h returns the first job (and makes the call safe to retry). */
  idempotencyKey?: string;
  maxAttempts?: number;
  timeoutMs?: number;
  labels?: Record<string, string>;
  runAt?: Date;
  gangSize?: number;
  /** Base of the retry backoff (full jitter over base * 2^(attempt-1)); default 1 s. */
  retryBaseDelayMs?: number;
}

export interface ListOptions {
  queue?: string;
  type?: string;
  states?: JobState[];
  pageSize?: number;
  /** Stop after this many jobs. */
  limit?: number;
}

/** A submitted job: `deduplicated` when its idempotency key matched; a gang's members in rank order. */
export type Submitted = Job & { deduplicated: boolean; gangMembers: Job[] };

const terminal = new Set([JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_FAILED, JobState.JOB_STATE_CANCELLED]);

/** Whether a job is finished (SUCCEEDED, FAILED or CANCELLED). */
export const isTerminal = (job: Job) => terminal.has(job.state);

/** A job state's short name: SUCCEEDED, RETRY_WAIT, ... */
export const stateName = (s: JobState) => (JobState[s] ?? 'UNKNOWN').replace('JOB_STATE_', '');

function toRequest(o: SubmitOptions): SubmitJobRequest {
  return SubmitJobRequest.fromPartial({
    type: o.type, input: o.input, queue: o.queue ?? '', priority: o.priority ?? 0,
    idempotencyKey: o.idempotencyKey ?? '', maxAttempts: o.maxAttempts ?? 0,
    timeout: o.timeoutMs !== undefined ? msToDuration(o.timeoutMs) : undefined, labels: o.labels ?? {},
    runAt: o.runAt, gangSize: o.gangSize ?? 0,
    retryBaseDelay: o.retryBaseDelayMs !== undefined ? msToDuration(o.retryBaseDelayMs) : undefined,
  });
}

/**
 * The aijob client. Errors are typed (see errors.ts); calls that are safe to repeat
 * are retried with backoff when the service is UNAVAILABLE, and watches re-open.
 *
 *   const aijob = new AijobClient({ address: 'localhost:50052', apiKey: process.env.AIJOB_API_KEY });
 *   const job = await aijob.submitAndWait({ type: 'echo', input: { hello: 'world' } });
 */
export class AijobClient {
  readonly jobs: JobServiceClient;
  readonly queuesClient: QueueServiceClient;
  private readonly auth: AuthServiceClient | undefined;
  /** Workspaces, keys, signing keys, audit log. */
  readonly admin: AdminApi;
  /** Queues and cluster statistics. */
  readonly queues: QueuesApi;
  /** Dead letters: list, stats, retry, purge. */
  readonly deadLetters: DeadLettersApi;
  /** Usage and cost reports. */
  readonly usage: UsageApi;
  private readonly creds: Credentials;
  private readonly maxAttempts: number;

  constructor(private readonly o: AijobClientOptions) {
    const creds = o.tls === true ? grpc.credentials.createSsl() : o.tls ? o.tls : grpc.credentials.createInsecure();
    const channel = {
      'grpc.keepalive_time_ms': 30_000, 'grpc.max_receive_message_length': 64 * 1024 * 1024,
      // Reconnect within the retry budget of safe calls after a restart (grpc-js default: up to 120 s).
      'grpc.max_reconnect_backoff_ms': 5_000,
      ...(o.interceptors ? { interceptors: o.interceptors } : {}),
    };
    this.jobs = new JobServiceClient(o.address, creds, channel);
    this.queuesClient = new QueueServiceClient(o.queueAddress ?? o.address, creds, channel);
    if (o.authAddress) this.auth = new AuthServiceClient(o.authAddress, creds, channel);
    this.creds = new Credentials({ apiKey: o.apiKey, token: o.token, auth: this.auth, exchange: o.exchangeTokens !== false });
    this.maxAttempts = Math.max(1, o.maxAttempts ?? 4);
    const unary = <R>(invoke: Invoke<R>, opts: CallOptions | undefined, safe: boolean) => this.unary<R>(invoke, opts, safe);
    this.admin = new AdminApi(() => {
      if (!this.auth) throw new Error('admin calls need the authAddress option');
      return this.auth;
    }, this.jobs, unary);
    this.queues = new QueuesApi(this.queuesClient, unary);
    this.deadLetters = new DeadLettersApi(this.jobs, unary);
    this.usage = new UsageApi(this.jobs, unary);
  }

  /** Submits one job; returns it with `deduplicated` when the idempotency key matched. Retried only with an idempotency key. */
  async submit(job: SubmitOptions, opts?: CallOptions): Promise<Submitted> {
    const res = await this.unary<SubmitJobResponse>((md, co, cb) => this.jobs.submitJob(toRequest(job), md, co, cb), opts, job.idempotencyKey !== undefined);
    return { ...res.job!, deduplicated: res.deduplicated, gangMembers: res.gangMembers };
  }

  /** Submits up to 1000 jobs in one call, all or none. Retried only when every job has an idempotency key. */
  async submitMany(jobs: SubmitOptions[], opts?: CallOptions): Promise<Submitted[]> {
    const safe = jobs.every((j) => j.idempotencyKey !== undefined);
    const res = await this.unary<SubmitJobsResponse>((md, co, cb) => this.jobs.submitJobs({ jobs: jobs.map(toRequest) }, md, co, cb), opts, safe);
    return res.results.map((r) => ({ ...r.job!, deduplicated: r.deduplicated, gangMembers: r.gangMembers }));
  }

  async get(jobId: string, opts?: CallOptions): Promise<Job> {
    return (await this.unary<GetJobResponse>((md, co, cb) => this.jobs.getJob({ jobId }, md, co, cb), opts, true)).job!;
  }

  /** One page of jobs, newest first. */
  async listPage(q: ListOptions & { pageToken?: string }, opts?: CallOptions): Promise<{ jobs: Job[]; nextPageToken: string }> {
    return this.unary<ListJobsResponse>((md, co, cb) => this.jobs.listJobs({
      queue: q.queue ?? '', type: q.type ?? '', states: q.states ?? [], pageSize: q.pageSize ?? 100,
      pageToken: q.pageToken ?? '',
    }, md, co, cb), opts, true);
  }

  /** Every matching job, newest first, fetching pages as you iterate. */
  async *list(q: ListOptions = {}, opts?: CallOptions): AsyncGenerator<Job> {
    let pageToken = '';
    let n = 0;
    do {
      const page = await this.listPage({ ...q, pageToken }, opts);
      for (const job of page.jobs) {
        yield job;
        if (q.limit !== undefined && ++n >= q.limit) return;
      }
      pageToken = page.nextPageToken;
    } while (pageToken);
  }

  /**
   * The job now, then after every change, ending after a terminal state. When the
   * stream breaks (UNAVAILABLE, or CANCELLED by a replica shutting down) it is opened
   * again with backoff for up to `deadlineMs` of outage; the server sends the current
   * state first, and a state already yielded is not yielded twice. Aborting `signal`
   * ends it with CancelledError.
   */
  async *watch(jobId: string, opts: { signal?: AbortSignal } = {}): AsyncGenerator<Job> {
    const { signal } = opts;
    const patienceMs = this.o.deadlineMs ?? 30_000;
    let failures = 0;
    let brokenSince = 0;
    let refreshed = false;
    let last = '';
    for (;;) {
      let credential: string | undefined;
      let stream: grpc.ClientReadableStream<WatchJobResponse> | undefined;
      const onAbort = () => stream?.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        if (signal?.aborted) throw abortError(signal);
        credential = await this.creds.current();
        stream = this.jobs.watchJob({ jobId }, bearer(credential));
        for await (const res of stream as AsyncIterable<WatchJobResponse>) {
          if (!res.job) continue;
          const version = `${res.job.state}|${res.job.attempt}|${res.job.updatedAt?.getTime()}|${res.job.progress}`;
          if (version === last) continue;
          last = version;
          failures = 0;
          yield res.job;
          if (isTerminal(res.job)) return;
        }
        // The server ends the stream after a terminal state; an end before one is an interruption.
        throw new UnavailableError(Object.assign(new Error('watch ended early'),
          { code: grpc.status.UNAVAILABLE, details: 'the watch stream ended before a terminal state', metadata: new grpc.Metadata() }));
      } catch (err) {
        if (signal?.aborted) throw abortError(signal);
        if (!isServiceError(err)) throw err;
        const e = toApiError(err);
        if (e instanceof UnauthenticatedError && !refreshed && credential !== undefined && this.creds.invalidate(credential)) {
          refreshed = true;
          continue;
        }
        // UNAVAILABLE, or CANCELLED that was not ours: a replica shutting down cancels the streams it still holds.
        const interrupted = e instanceof UnavailableError || e instanceof CancelledError;
        if (failures++ === 0) brokenSince = Date.now();
        const wait = backoffMs(failures);
        if (!interrupted || Date.now() + wait - brokenSince > patienceMs) throw e;
        await pause(wait, signal);
      } finally {
        signal?.removeEventListener('abort', onAbort);
        stream?.cancel();
      }
    }
  }

  /**
   * Submits and waits for the job to finish; returns its final record. The wait survives
   * restarts of the job service (see `watch`); `timeoutMs` bounds it (DeadlineExceededError).
   */
  async submitAndWait(job: SubmitOptions, opts: CallOptions & { timeoutMs?: number } = {}): Promise<Job> {
    const submitted = await this.submit(job, opts);
    const signal = opts.timeoutMs ? anySignal(opts.signal, AbortSignal.timeout(opts.timeoutMs)) : opts.signal;
    let last: Job = submitted;
    for await (const j of this.watch(submitted.id, { signal })) last = j;
    return last;
  }

  /**
   * Cancels a job that has not finished. Idempotent, so retried on UNAVAILABLE: a job
   * that is already CANCELLED is returned as it is; one that SUCCEEDED or FAILED is a
   * FailedPreconditionError.
   */
  async cancel(jobId: string, reason = '', opts?: CallOptions): Promise<Job> {
    try {
      return (await this.unary<CancelJobResponse>((md, co, cb) => this.jobs.cancelJob({ jobId, reason }, md, co, cb), opts, true)).job!;
    } catch (err) {
      if (!(err instanceof FailedPreconditionError)) throw err;
      const job = await this.get(jobId, opts);
      if (job.state !== JobState.JOB_STATE_CANCELLED) throw err;
      return job;
    }
  }

  /** Reopens a FAILED or CANCELLED job (not retried: a repeat would fail once the job is QUEUED). */
  async retry(jobId: string, opts?: CallOptions): Promise<Job> {
    return (await this.unary<RetryJobResponse>((md, co, cb) => this.jobs.retryJob({ jobId }, md, co, cb), opts, false)).job!;
  }

  close(): void {
    this.jobs.close();
    this.queuesClient.close();
    this.auth?.close();
  }

  /** Metadata with a current credential: the API key, the given token, or a fresh JWT. */
  async metadata(): Promise<grpc.Metadata> {
    return bearer(await this.creds.current());
  }

  private unary<R>(invoke: Invoke<R>, opts: CallOptions | undefined, safeToRetry: boolean): Promise<R> {
    return runUnary(this.creds, this.maxAttempts, this.o.deadlineMs ?? 30_000, invoke, opts, safeToRetry);
  }
}

function anySignal(...signals: (AbortSignal | undefined)[]): AbortSignal {
  const given = signals.filter((s): s is AbortSignal => s !== undefined);
  return given.length === 1 ? given[0]! : AbortSignal.any(given);
}
