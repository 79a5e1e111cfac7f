// matrix-js-sdk 43 targets Node 22; the machine has Node 20. The one thing it uses that Node 20
// lacks is Promise.withResolvers (ES2024); this adds exactly the standard behaviour.
if (typeof Promise.withResolvers !== "function") {
    Promise.withResolvers = function withResolvers() {
        let resolve;
        let reject;
        const promise = new this((res, rej) => { resolve = res; reject = rej; });
        return { promise, resolve, reject };
    };
}
