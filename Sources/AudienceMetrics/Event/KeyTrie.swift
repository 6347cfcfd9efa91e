/// An ``InputMapping`` compiled for ``EventDecoder``: a trie over key paths, laid out flat
/// in memory it owns (no reference counting on the per-key lookup path). Its owner calls
/// ``deallocate()``.
///
/// It also remembers the order keys came in: which child was an object's first key
/// and which followed each child. Producers write their keys in a fixed order, so the
/// next key is usually the one predicted, and it is recognised by comparing its bytes
/// in place, without scanning it as a string and searching the children.
struct KeyTrie {
    struct Child {
        var length: Int
        var prefix: UInt64  // first ≤ 8 key bytes, little-endian, zero-padded
        var tail: Int  // offset of bytes 8… in `tails`
        var node: Int
        /// The key has no `"`, `\` or control byte: in JSON it is written as it is,
        /// so finding its bytes between quotes is finding the key.
        var isPlain: Bool
    }
    struct Node {
        var childStart = 0
        var childEnd = 0
        var field: EventField?
        var priority = 0
        var attributeSource = false
        var hasChildren: Bool { childEnd > childStart }
    }
    let nodes: UnsafeMutableBufferPointer<Node>
    let children: UnsafeMutableBufferPointer<Child>
    let tails: UnsafeMutableBufferPointer<UInt8>
    /// Per node: the child that was the first key of its object last time (-1: none).
    let firstKey: UnsafeMutableBufferPointer<Int>
    /// Per child: the child whose key followed it last time (-1: none).
    let nextKey: UnsafeMutableBufferPointer<Int>

    func deallocate() {
        nodes.deallocate()
        children.deallocate()
        tails.deallocate()
        firstKey.deallocate()
        nextKey.deallocate()
    }

    /// Compiles `mapping`: each field's candidate paths, with their order as priority (a
    /// path that two fields name belongs to the first), and the attribute sources.
    static func compile(_ mapping: InputMapping) -> KeyTrie {
        // Build a nested trie first, then lay it out flat.
        final class Builder {
            var children: [(key: [UInt8], node: Builder)] = []
            var field: EventField?
            var priority = 0
            var attributeSource = false
        }
        let root = Builder()
        func node(for dottedPath: String) -> Builder {
            var current = root
            for component in dottedPath.split(separator: ".", omittingEmptySubsequences: false) {
                let key = Array(component.utf8)
                if let existing = current.children.first(where: { $0.key == key }) {
                    current = existing.node
                } else {
                    let next = Builder()
                    current.children.append((key, next))
                    current = next
                }
            }
            return current
        }
        for field in EventField.allCases {
            for (priority, candidate) in mapping.candidates(for: field).enumerated() {
                let target = node(for: candidate)
                if target.field == nil {
                    target.field = field
                    target.priority = min(priority, 0xFE)
                }
            }
        }
        for source in mapping.attributeSources { node(for: source).attributeSource = true }

        var nodes: [Node] = []
        var children: [Child] = []
        var tails: [UInt8] = []
        func layOut(_ builder: Builder) -> Int {
            let index = nodes.count
            nodes.append(Node(field: builder.field, priority: builder.priority, attributeSource: builder.attributeSource))
            let childIndices = builder.children.map { layOut($0.node) }
            let first = children.count
            for (offset, child) in builder.children.enumerated() {
                let isPlain = !child.key.contains { $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") || $0 < 0x20 }
                children.append(Child(length: child.key.count, prefix: JSONCursor.prefix64(child.key), tail: tails.count, node: childIndices[offset],
                                           isPlain: isPlain))
                tails.append(contentsOf: child.key.dropFirst(8))
            }
            nodes[index].childStart = first
            nodes[index].childEnd = children.count
            return index
        }
        _ = layOut(root)
        func copy<T>(_ array: [T]) -> UnsafeMutableBufferPointer<T> {
            let buffer = UnsafeMutableBufferPointer<T>.allocate(capacity: max(1, array.count))
            _ = buffer.initialize(from: array)
            return buffer
        }
        return KeyTrie(nodes: copy(nodes), children: copy(children), tails: copy(tails),
                       firstKey: copy(Array(repeating: -1, count: nodes.count)), nextKey: copy(Array(repeating: -1, count: children.count)))
    }
}
