// ESLint (flat config): typescript-eslint's recommended rules on every TypeScript and
// JavaScript file we write; formatting is Prettier's job (eslint-config-prettier turns
// the stylistic rules off so the two never disagree). `npm run lint` runs it.
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: [
      '**/node_modules/**', '**/dist/**', 'libs/contracts/src/gen/**', 'libs/contracts/descriptors/**',
      '.aijob/**', '.tap/**', 'coverage/**', 'sdks/python/**', '**/*.d.ts',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node }, ecmaVersion: 2023, sourceType: 'module' },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // `_`-prefixed names are deliberately unused (callback positions, destructuring rests).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true }],
      // Services log through pino; a stray console.log in a service is a bug (STYLE.md rule 5).
      'no-console': 'error',
      eqeqeq: ['error', 'always', { null: 'ignore' }],
      'prefer-const': 'error',
      'no-var': 'error',
    },
  },
  {
    // Command-line programs, scripts, benchmarks and tests print to the terminal by design.
    files: ['scripts/**', 'test/**', 'libs/cli/**', '**/*.mjs', '**/*.cjs'],
    rules: { 'no-console': 'off' },
  },
  {
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs' },
  },
  prettier,
);
