/// A window's (or slice's) aggregates by segment, and a sliced window size's slices.
extension PartitionAggregator {
    final class WindowState {
        let windowIndex: Int
        let start: Int64
        let end: Int64
        var slots = HashMap64<Int>(vacant: -1)
        var keys: [UInt64] = []
        var aggregates: [SegmentAggregate] = []
        var changed: [Bool] = []
        var changedSlots: [Int] = []
        var overflowedEvents: Int64 = 0
        /// A tumbling window whose slice (of another size) holds the rest of it.
        var sharesSlice = false
        /// How many users each segment had in the last closed window of this size, to
        /// size a new segment's user table at once (nil: it grows as users arrive).
        let sizeHints: SizeHints?

        init(windowIndex: Int, start: Int64, end: Int64, sizeHints: SizeHints? = nil) {
            self.windowIndex = windowIndex
            self.start = start
            self.end = end
            self.sizeHints = sizeHints
        }

        @inline(__always)
        func slot(for key: UInt64, cap: Int, overflowKey: UInt64, topContentCapacity: Int) -> Int {
            if let slot = slots[key] {
                markChanged(slot)
                return slot
            }
            var target = key
            if keys.count >= cap {
                overflowedEvents += 1
                target = overflowKey
                if let slot = slots[target] {
                    markChanged(slot)
                    return slot
                }
            }
            let slot = keys.count
            slots[target] = slot
            keys.append(target)
            var aggregate = SegmentAggregate(topContentCapacity: topContentCapacity)
            if let users = sizeHints?.users[target] { aggregate.users.reserveExact(users) }
            aggregates.append(aggregate)
            changed.append(false)
            markChanged(slot)
            return slot
        }

        @inline(__always)
        func markChanged(_ slot: Int) {
            if !changed[slot] {
                changed[slot] = true
                changedSlots.append(slot)
            }
        }

        func clearChanged() {
            for slot in changedSlots { changed[slot] = false }
            changedSlots.removeAll(keepingCapacity: true)
        }

        /// Adds what `slice` holds.
        func absorb(_ slice: WindowState) {
            for (slot, key) in slice.keys.enumerated() {
                if let own = slots[key] {
                    aggregates[own].merge(slice.aggregates[slot])
                } else {
                    slots[key] = keys.count
                    keys.append(key)
                    aggregates.append(slice.aggregates[slot])
                    changed.append(false)
                }
            }
            overflowedEvents += slice.overflowedEvents
        }
    }

    /// Per segment, the distinct users it had in the last closed window of one tumbling
    /// size. A new window's segments are sized from it: each window's user tables
    /// otherwise grow from 16 slots by doubling, and those rehashes took 4–5 % of the
    /// stage-1 workers' samples in lean bounded benchmark runs (about 60 events per
    /// segment, window and partition). Only the table's size depends on it, never what is
    /// counted.
    final class SizeHints {
        var users = HashMap64<Int>(vacant: 0)

        /// Replaces the hints with the segments of `windows` (closed ones, oldest first:
        /// the newest count of a segment wins).
        func record(_ windows: [WindowState]) {
            users.removeAllKeepingSlots()
            for window in windows {
                for (slot, key) in window.keys.enumerated() where window.aggregates[slot].users.isExact {
                    users[key] = window.aggregates[slot].users.exactCount
                }
            }
        }
    }

    /// The slices of one hopping window size.
    final class Slicing {
        /// Slices (`advance` long, aligned as window starts are), oldest first.
        var slices: [WindowState] = []
        /// Every window starting at or before this has been emitted as final.
        var emittedThrough: Int64 = .min

        /// The start of the oldest window of `spec` that contains the slice starting at
        /// `sliceStart` and has not been emitted (after `sliceStart` if none is left).
        @inline(__always)
        func oldestPendingStart(containing sliceStart: Int64, _ spec: WindowSpec) -> Int64 {
            let first = sliceStart - spec.size + spec.advance
            return emittedThrough == .min ? first : max(first, emittedThrough + spec.advance)
        }

        /// Starts of the windows of `spec` that contain the slice starting at `sliceStart`
        /// and have not been emitted, oldest first.
        func pendingStarts(containing sliceStart: Int64, _ spec: WindowSpec) -> StrideThrough<Int64> {
            stride(from: oldestPendingStart(containing: sliceStart, spec), through: sliceStart, by: Int(spec.advance))
        }
    }
}
