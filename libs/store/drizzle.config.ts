import { defineConfig } from 'drizzle-kit';

// Generate a named migration after a schema change (run `npm run build` first):
//   npm run db:generate -- --name add_job_priority
export default defineConfig({
  dialect: 'postgresql',
  schema: './libs/store/dist/schema/index.js',
  out: './libs/store/migrations',
});
