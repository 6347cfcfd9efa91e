/// How the stages get their partitions (`processing.assignment`).
public enum PartitionAssignment: Sendable, Equatable {
    /// Kafka's consumer groups spread the partitions over the running processes and move
    /// them when one joins or leaves.
    case group
    /// This process is instance `index` of `count` and reads a fixed share of each
    /// topic, without joining a group: no join to wait for at start-up, no rebalances.
    /// Every instance must run with the same `count` and `processing.stage1_workers`.
    case fixed(index: Int, count: Int)

    /// The input partitions stage-1 worker `worker` of this process reads (nil in consumer
    /// groups, where the group decides): the `count × workers` workers of all instances
    /// deal the partitions out by number (partition p to worker slot p mod slots,
    /// slot = index × workers + worker).
    public func stageOnePartitions(worker: Int, workers: Int, of partitions: Int) -> [Int32]? {
        guard case .fixed(let index, let count) = self else { return nil }
        let slots = count * workers
        let slot = index * workers + worker
        return stride(from: slot, to: partitions, by: slots).map { Int32($0) }
    }

    /// The partials partitions this process's stage 2 reads (partition p to instance
    /// p mod count; nil in consumer groups).
    public func stageTwoPartitions(of partitions: Int) -> [Int32]? {
        guard case .fixed(let index, let count) = self else { return nil }
        return stride(from: index, to: partitions, by: count).map { Int32($0) }
    }

    /// Stage 1's transactional id with a fixed share: named after the worker slot, so
    /// whichever process runs that slot next fences the one before (there is no group
    /// generation to fence it by).
    public func stageOneTransactionalID(app: String, worker: Int, workers: Int) -> String? {
        guard case .fixed(let index, let count) = self else { return nil }
        return "\(app)-stage1-slot\(index * workers + worker)of\(count * workers)"
    }

    /// Stage 2's transactional id with a fixed share (see ``stageOneTransactionalID``).
    public func stageTwoTransactionalID(app: String) -> String? {
        guard case .fixed(let index, let count) = self else { return nil }
        return "\(app)-stage2-instance\(index)of\(count)"
    }
}

extension PulseConfiguration {
    static func readAssignment(_ r: inout ConfigurationReader) throws(ConfigurationError) -> PartitionAssignment {
        let mode = try r.choice("processing.assignment", default: "group", ["group", "static"], "`group`: the stages join Kafka consumer groups, which spread the partitions over the running processes and move them when one joins, leaves or stops answering. `static`: each process reads a fixed share — input partition p goes to worker slot p mod (instances × `stage1_workers`), partials partition p to instance p mod instances — without joining a group: processing starts without waiting for a group to form, but nothing moves when an instance stops; run each instance under a supervisor that restarts it (a restarted instance fences its predecessor with `exactly_once`).")
        let count = try r.integer("processing.instance_count", default: 1, range: 1...1_024, "With `assignment: static`: how many instances share the work. Every instance needs the same value; change it only with all instances stopped.")
        let index = try r.integer("processing.instance_index", default: 0, range: 0...1_023, "With `assignment: static`: which instance this is, 0 … instance_count − 1 (in a Kubernetes StatefulSet, the pod's ordinal: `PULSE_PROCESSING__INSTANCE_INDEX` from the `apps.kubernetes.io/pod-index` label).")
        guard mode == "static" else { return .group }
        guard index < count else {
            throw ConfigurationError(key: "processing.instance_index", message: "\(index) is not below processing.instance_count (\(count))")
        }
        return .fixed(index: index, count: count)
    }
}
