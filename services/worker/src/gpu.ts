import { execFile } from 'node:child_process';
import { gauge } from '@aijob/telemetry';

/**
 * GPU count and mean utilisation from nvidia-smi, when there is one. Without a GPU the
 * count is 0 and `worker_gpu_utilization` has no series.
 */
export function gpuProbe(): () => Promise<{ count: number; utilization?: number }> {
  const g = gauge('worker_gpu_utilization', 'GPU utilisation in percent, per GPU.', ['gpu']);
  let available = true;
  return () => new Promise((resolve) => {
    if (!available) return resolve({ count: 0 });
    execFile('nvidia-smi', ['--query-gpu=index,utilization.gpu', '--format=csv,noheader,nounits'], { timeout: 2_000 },
      (err, stdout) => {
        if (err) { available = false; return resolve({ count: 0 }); }
        const rows = stdout.trim().split('\n').map((l) => l.split(',').map((x) => x.trim())).filter((r) => r.length === 2);
        if (rows.length === 0) return resolve({ count: 0 });
        let sum = 0;
        for (const [index, util] of rows) {
          const u = Number(util);
          g.set({ gpu: index! }, u);
          sum += u;
        }
        resolve({ count: rows.length, utilization: sum / rows.length });
      });
  });
}
