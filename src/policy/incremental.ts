export { PolicyCompiler } from './compile.js';
