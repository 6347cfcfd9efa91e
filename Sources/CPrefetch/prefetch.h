#ifndef AUDIENCE_PULSE_PREFETCH_H
#define AUDIENCE_PULSE_PREFETCH_H

/// Asks the CPU to start loading the cache line at `address` for a write soon. A hint
/// only: it never faults (any address may be passed) and changes no result.
static inline void pulse_prefetch_for_write(const void *address) {
    __builtin_prefetch(address, 1, 3);
}

/// Asks the CPU to start loading the cache line at `address` for a read soon (a hint,
/// as above).
static inline void pulse_prefetch_for_read(const void *address) {
    __builtin_prefetch(address, 0, 3);
}

#endif
