import * as grpc from '@grpc/grpc-js';
import {
  AuthServiceClient, JobServiceClient, JobState, QueueServiceClient, SubmitJobRequest, msToDuration,
  type CancelJobResponse, type GetJobResponse, type Job, type ListJobsResponse,
  type RetryJobResponse, type SubmitJobResponse, type SubmitJobsResponse,
} from '@aijob/contracts';
import { AdminApi } from './admin.js';
import { QueuesApi } from './queues.js';
import { DeadLettersApi, UsageApi } from './dead-letters.js';
import { toApiError, UnavailableError } from './errors.js';

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
  /** Deadline of unary calls in ms. Default 30 000. */
  deadlineMs?: number;
  /** Attempts of safe calls on UNAVAILABLE. Default 4. */
  maxAttempts?: number;
}

/** Per-call options. */
export interface CallOptions {
  deadlineMs?: number;
  signal?: AbortSignal;
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
 * are retried with backoff when the service is UNAVAILABLE.
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
  private token: { value: string; refreshAt: number } | undefined;
  private tokenPending: Promise<string> | undefined;

  constructor(private readonly o: AijobClientOptions) {
    if (!o.apiKey && !o.token) throw new Error('AijobClient needs apiKey or token');
    const creds = o.tls === true ? grpc.credentials.createSsl() : o.tls ? o.tls : grpc.credentials.createInsecure();
    const channel = { 'grpc.keepalive_time_ms': 30_000, 'grpc.max_receive_message_length': 64 * 1024 * 1024 };
    this.jobs = new JobServiceClient(o.address, creds, channel);
    this.queuesClient = new QueueServiceClient(o.queueAddress ?? o.address, creds, channel);
    if (o.authAddress) this.auth = new AuthServiceClient(o.authAddress, creds, channel);
    this.admin = new AdminApi(() => {
      if (!this.auth) throw new Error('admin calls need the authAddress option');
      return this.auth;
    }, this.jobs, (invoke, opts, safe) => this.unary(invoke, opts, safe));
    const unary = <R>(...a: Parameters<AijobClient['unary']>) => this.unary<R>(...(a as [never, never, never]));
    this.queues = new QueuesApi(this.queuesClient, unary);
    this.deadLetters = new DeadLettersApi(this.jobs, unary);
    this.usage = new UsageApi(this.jobs, unary);
  }

  /** Submits one job; returns it with `deduplicated` when the idempotency key matched. */
  async submit(job: SubmitOptions, opts?: CallOptions): Promise<Submitted> {
    const res = await this.unary<SubmitJobResponse>((md, co, cb) => this.jobs.submitJob(toRequest(job), md, co, cb), opts, job.idempotencyKey !== undefined);
    return { ...res.job!, deduplicated: res.deduplicated, gangMembers: res.gangMembers };
  }

  /** Submits up to 1000 jobs in one call, all or none. */
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

  /** The job now, then after every change, ending after a terminal state. */
  async *watch(jobId: string, opts: { signal?: AbortSignal } = {}): AsyncGenerator<Job> {
    const md = await this.metadata();
    const stream = this.jobs.watchJob({ jobId }, md);
    const abort = () => stream.cancel();
    opts.signal?.addEventListener('abort', abort, { once: true });
    try {
      for await (const res of stream as AsyncIterable<{ job?: Job }>) {
        if (res.job) yield res.job;
      }
    } catch (err) {
      throw toApiError(err as grpc.ServiceError);
    } finally {
      opts.signal?.removeEventListener('abort', abort);
      stream.cancel();
    }
  }

  /** Submits and waits for the job to finish; returns its final record. */
  async submitAndWait(job: SubmitOptions, opts: CallOptions & { timeoutMs?: number } = {}): Promise<Job> {
    const submitted = await this.submit(job, opts);
    const signal = opts.timeoutMs ? anySignal(opts.signal, AbortSignal.timeout(opts.timeoutMs)) : opts.signal;
    let last: Job = submitted;
    for await (const j of this.watch(submitted.id, { signal })) last = j;
    if (!isTerminal(last)) throw new Error(`job ${submitted.id} did not finish (last state ${stateName(last.state)})`);
    return last;
  }

  async cancel(jobId: string, reason = '', opts?: CallOptions): Promise<Job> {
    return (await this.unary<CancelJobResponse>((md, co, cb) => this.jobs.cancelJob({ jobId, reason }, md, co, cb), opts, false)).job!;
  }

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
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${await this.credential()}`);
    return md;
  }

  private async credential(): Promise<string> {
    if (this.o.token) return this.o.token;
    if (!this.auth || !this.o.apiKey || this.o.exchangeTokens === false) return this.o.apiKey!;
    if (this.token && Date.now() < this.token.refreshAt) return this.token.value;
    this.tokenPending ??= new Promise<string>((resolve, reject) => {
      this.auth!.issueToken({ apiKey: this.o.apiKey! }, new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err, res) => {
        this.tokenPending = undefined;
        if (err) return reject(toApiError(err));
        const expires = res.expiresAt?.getTime() ?? Date.now() + 60_000;
        // Refresh when 80% of the lifetime has passed.
        this.token = { value: res.token, refreshAt: Date.now() + (expires - Date.now()) * 0.8 };
        resolve(res.token);
      });
    });
    return this.tokenPending;
  }

  private async unary<R>(
    invoke: (md: grpc.Metadata, co: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: R) => void) => grpc.ClientUnaryCall,
    opts: CallOptions | undefined,
    safeToRetry: boolean,
  ): Promise<R> {
    const attempts = safeToRetry ? (this.o.maxAttempts ?? 4) : 1;
    for (let attempt = 1; ; attempt++) {
      try {
        const md = await this.metadata();
        return await new Promise<R>((resolve, reject) => {
          const call = invoke(md, { deadline: Date.now() + (opts?.deadlineMs ?? this.o.deadlineMs ?? 30_000) },
            (err, res) => (err ? reject(toApiError(err)) : resolve(res)));
          if (opts?.signal) {
            if (opts.signal.aborted) call.cancel();
            opts.signal.addEventListener('abort', () => call.cancel(), { once: true });
          }
        });
      } catch (err) {
        if (!(err instanceof UnavailableError) || attempt >= attempts || opts?.signal?.aborted) throw err;
        await new Promise((r) => setTimeout(r, Math.min(2_000, 100 * 2 ** attempt) * (0.5 + Math.random() / 2)));
      }
    }
  }
}

function anySignal(...signals: (AbortSignal | undefined)[]): AbortSignal {
  const given = signals.filter((s): s is AbortSignal => s !== undefined);
  return given.length === 1 ? given[0]! : AbortSignal.any(given);
}
