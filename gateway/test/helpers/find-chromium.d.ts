/** CHROMIUM_PATH when set, else `chromium` or `chromium-browser` on the PATH; undefined when there is none. */
export declare function findChromium(env?: NodeJS.ProcessEnv): string | undefined;
