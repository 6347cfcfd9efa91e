/// A named segment defined by a boolean rule over an event's attributes and type.
///
/// The language: comparisons `name == "value"`, `name != "value"`,
/// `name in ["a", "b"]`, `name not in [...]`, combined with `and`, `or`, `not` and
/// parentheses (`not` binds tightest, then `and`, then `or`). `name` is an attribute name
/// (letters, digits, `_`, `-`, `.`), or `type` for the event type. Strings use double or
/// single quotes with `\` escapes. A missing attribute equals no value: `==` and `in` are
/// false, `!=` and `not in` true. Example: `plan == "pro" and device != "desktop"`.
///
/// Compiled once (``compile(_:)``) into flat arrays of plain values (nodes, literals,
/// literal bytes); ``SegmentRuleSet`` evaluates a segment specification's rules together.
public struct SegmentRule: Sendable, Hashable {
    /// The rule's source text.
    public let source: String
    /// Attribute names the rule reads (each needs a decoder slot).
    public let attributeNames: [String]
    let nodes: [Node]
    let root: Int
    /// The rule's string literals, their bytes in ``literalBytes``.
    let literals: [Literal]
    let literalBytes: [UInt8]

    enum Operand: Sendable, Hashable {
        case type
        case attribute(Int)  // index into attributeNames
    }

    struct Literal: Sendable, Hashable {
        var hash: UInt64
        var start: Int
        var count: Int
    }

    enum Node: Sendable, Hashable {
        /// The operand equals literal `literal`.
        case equals(Operand, literal: Int)
        /// The operand equals one of the literals `literals`.
        case member(Operand, literals: Range<Int>)
        case not(Int)
        case and(Int, Int)
        case or(Int, Int)
    }

    /// A rule that did not parse: what and where.
    public struct ParseError: Error, Sendable, Hashable, CustomStringConvertible {
        public var message: String
        public var position: Int
        public var description: String { "\(message) at character \(position + 1)" }
    }

    /// Parses and compiles a rule.
    public static func compile(_ source: String) throws(ParseError) -> SegmentRule {
        var parser = Parser(text: Array(source.utf8))
        let root = try parser.parseOr()
        parser.skipSpaces()
        guard parser.position == parser.text.count else {
            throw ParseError(message: "unexpected text", position: parser.position)
        }
        return SegmentRule(source: source, attributeNames: parser.names, nodes: parser.nodes, root: root, literals: parser.literals,
                           literalBytes: parser.literalBytes)
    }

    private struct Parser {
        let text: [UInt8]
        var position = 0
        var nodes: [Node] = []
        var names: [String] = []
        var literals: [Literal] = []
        var literalBytes: [UInt8] = []

        mutating func skipSpaces() {
            while position < text.count, text[position] == 0x20 || text[position] == 0x09 || text[position] == 0x0a || text[position] == 0x0d {
                position += 1
            }
        }

        mutating func add(_ node: Node) -> Int {
            nodes.append(node)
            return nodes.count - 1
        }

        /// Stores a string literal; returns its index.
        mutating func addLiteral(_ bytes: [UInt8]) -> Int {
            literals.append(Literal(hash: bytes.withUnsafeBytes { Hash64.hash($0) }, start: literalBytes.count, count: bytes.count))
            literalBytes += bytes
            return literals.count - 1
        }

        func isWordByte(_ byte: UInt8) -> Bool {
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".")
        }

        mutating func keyword(_ word: String) -> Bool {
            skipSpaces()
            let bytes = Array(word.utf8)
            guard text.count - position >= bytes.count, Array(text[position..<(position + bytes.count)]) == bytes else { return false }
            let end = position + bytes.count
            if end < text.count, isWordByte(text[end]) { return false }
            position = end
            return true
        }

        mutating func symbol(_ word: String) -> Bool {
            skipSpaces()
            let bytes = Array(word.utf8)
            guard text.count - position >= bytes.count, Array(text[position..<(position + bytes.count)]) == bytes else { return false }
            position += bytes.count
            return true
        }

        mutating func parseOr() throws(ParseError) -> Int {
            var left = try parseAnd()
            while keyword("or") { left = add(.or(left, try parseAnd())) }
            return left
        }

        mutating func parseAnd() throws(ParseError) -> Int {
            var left = try parseUnary()
            while keyword("and") { left = add(.and(left, try parseUnary())) }
            return left
        }

        mutating func parseUnary() throws(ParseError) -> Int {
            if keyword("not") { return add(.not(try parseUnary())) }
            if symbol("(") {
                let inner = try parseOr()
                guard symbol(")") else { throw ParseError(message: "expected )", position: position) }
                return inner
            }
            return try parseComparison()
        }

        mutating func parseComparison() throws(ParseError) -> Int {
            skipSpaces()
            let start = position
            while position < text.count, isWordByte(text[position]) { position += 1 }
            guard position > start else { throw ParseError(message: "expected an attribute name or type", position: start) }
            let name = String(decoding: text[start..<position], as: UTF8.self)
            guard !["and", "or", "not", "in"].contains(name) else { throw ParseError(message: "expected an attribute name, found '\(name)'", position: start) }
            let operand: Operand
            if name == "type" {
                operand = .type
            } else if let existing = names.firstIndex(of: name) {
                operand = .attribute(existing)
            } else {
                names.append(name)
                operand = .attribute(names.count - 1)
            }
            if symbol("==") {
                return add(.equals(operand, literal: addLiteral(try parseString())))
            }
            if symbol("!=") {
                let equals = add(.equals(operand, literal: addLiteral(try parseString())))
                return add(.not(equals))
            }
            let negated = keyword("not")
            guard keyword("in") else {
                throw ParseError(message: negated ? "expected 'in' after 'not'" : "expected ==, != or in", position: position)
            }
            guard symbol("[") else { throw ParseError(message: "expected [", position: position) }
            let first = addLiteral(try parseString())
            while symbol(",") { _ = addLiteral(try parseString()) }
            guard symbol("]") else { throw ParseError(message: "expected ] or ,", position: position) }
            let member = add(.member(operand, literals: first..<literals.count))
            return negated ? add(.not(member)) : member
        }

        mutating func parseString() throws(ParseError) -> [UInt8] {
            skipSpaces()
            guard position < text.count, text[position] == UInt8(ascii: "\"") || text[position] == UInt8(ascii: "'") else {
                throw ParseError(message: "expected a quoted string", position: position)
            }
            let quote = text[position]
            position += 1
            var result: [UInt8] = []
            while position < text.count, text[position] != quote {
                if text[position] == UInt8(ascii: "\\"), position + 1 < text.count { position += 1 }
                result.append(text[position])
                position += 1
            }
            guard position < text.count else { throw ParseError(message: "unterminated string", position: position) }
            position += 1
            return result
        }
    }
}

/// The rules of a segment specification, compiled together for evaluation: their nodes,
/// literals and literal bytes in one array each, attribute operands mapped to decoder
/// slots. Evaluation walks them over raw buffers, so it neither allocates nor touches a
/// reference count.
struct SegmentRuleSet: Sendable {
    private let nodes: [SegmentRule.Node]
    private let literals: [SegmentRule.Literal]
    private let bytes: [UInt8]
    /// Each rule's root node.
    private let roots: [Int]

    /// - Parameter slots: per rule, the decoder slot of each of its attribute names.
    init(_ rules: [SegmentRule], slots: [[Int]]) {
        var nodes: [SegmentRule.Node] = []
        var literals: [SegmentRule.Literal] = []
        var bytes: [UInt8] = []
        var roots: [Int] = []
        for (rule, ruleSlots) in zip(rules, slots) {
            let (nodeBase, literalBase, byteBase) = (nodes.count, literals.count, bytes.count)
            func slotted(_ operand: SegmentRule.Operand) -> SegmentRule.Operand {
                guard case .attribute(let name) = operand else { return operand }
                return .attribute(ruleSlots[name])
            }
            for node in rule.nodes {
                switch node {
                case .equals(let operand, let literal): nodes.append(.equals(slotted(operand), literal: literalBase + literal))
                case .member(let operand, let range): nodes.append(.member(slotted(operand), literals: (literalBase + range.lowerBound)..<(literalBase + range.upperBound)))
                case .not(let inner): nodes.append(.not(nodeBase + inner))
                case .and(let left, let right): nodes.append(.and(nodeBase + left, nodeBase + right))
                case .or(let left, let right): nodes.append(.or(nodeBase + left, nodeBase + right))
                }
            }
            literals += rule.literals.map { SegmentRule.Literal(hash: $0.hash, start: byteBase + $0.start, count: $0.count) }
            bytes += rule.literalBytes
            roots.append(nodeBase + rule.root)
        }
        self.nodes = nodes
        self.literals = literals
        self.bytes = bytes
        self.roots = roots
    }

    var isEmpty: Bool { roots.isEmpty }

    /// Calls `body` with the index of every rule the decoder's current event matches, in
    /// order.
    @inline(__always)
    func forEachMatch(_ decoder: EventDecoder, _ body: (Int) -> Void) {
        nodes.withUnsafeBufferPointer { nodes in
            literals.withUnsafeBufferPointer { literals in
                bytes.withUnsafeBytes { bytes in
                    let compiled = Compiled(nodes: nodes, literals: literals, bytes: bytes)
                    for (index, root) in roots.enumerated() where compiled.evaluate(root, decoder) { body(index) }
                }
            }
        }
    }

    /// The arrays, borrowed for one round of evaluations.
    private struct Compiled {
        var nodes: UnsafeBufferPointer<SegmentRule.Node>
        var literals: UnsafeBufferPointer<SegmentRule.Literal>
        var bytes: UnsafeRawBufferPointer

        /// Whether `actual` (bytes and hash) is literal `index`: hashes first, then bytes.
        func matches(_ actual: (UnsafeRawBufferPointer, UInt64), _ index: Int) -> Bool {
            let literal = literals[index]
            guard actual.1 == literal.hash, actual.0.count == literal.count else { return false }
            return actual.0.elementsEqual(UnsafeRawBufferPointer(rebasing: bytes[literal.start..<(literal.start + literal.count)]))
        }

        /// Node `index` for the decoder's current event: an attribute it does not carry
        /// equals no value.
        func evaluate(_ index: Int, _ decoder: EventDecoder) -> Bool {
            func resolve(_ operand: SegmentRule.Operand) -> (UnsafeRawBufferPointer, UInt64)? {
                switch operand {
                case .type:
                    return (decoder.bytes(decoder.event.type), decoder.event.typeHash)
                case .attribute(let slot):
                    let value = decoder.attributeValue(slot)
                    return value.isPresent ? (decoder.bytes(value), decoder.attributeHash(slot)) : nil
                }
            }
            switch nodes[index] {
            case .equals(let operand, let literal):
                guard let actual = resolve(operand) else { return false }
                return matches(actual, literal)
            case .member(let operand, let literals):
                guard let actual = resolve(operand) else { return false }
                return literals.contains { matches(actual, $0) }
            case .not(let inner):
                return !evaluate(inner, decoder)
            case .and(let left, let right):
                return evaluate(left, decoder) && evaluate(right, decoder)
            case .or(let left, let right):
                return evaluate(left, decoder) || evaluate(right, decoder)
            }
        }
    }
}
