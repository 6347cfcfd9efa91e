import AudienceMetrics
import Foundation
import Testing
@testable import AudiencePulse

@Suite("Read model: a record's headline")
struct HeadlineReaderTests {
    /// The oracle: what a general JSON decoder makes of the same text.
    static func decoded(_ json: String) -> MetricsStore.Headline? {
        try? JSONDecoder().decode(MetricsStore.Headline.self, from: Data(json.utf8))
    }

    @Test("every record of the full and example jobs, and of the lean job without optional families, reads as a general JSON decoder reads it",
          arguments: [SuiteBenchmark.fullJobBody, SuiteBenchmark.exampleJobBody, SuiteBenchmark.leanJobBody])
    func recordsOfTheJobs(body: String) throws {
        let configuration = try PulseConfiguration.load(
            yaml: "kafka:\n  bootstrap.servers: 127.0.0.1:9092\ntopics:\n  input: events\n" + body)
        let lean = configuration.aggregation.metrics.isEmpty
        let local = LocalPipeline(config: configuration.aggregation, trend: configuration.trend)
        var corpus = ReferenceCorpus(count: 5_000)
        var records: [MetricRecord] = []
        for sequence in 0..<40_000 {
            let index = corpus.prepare(sequence)
            _ = corpus.messages[index].withUnsafeBytes { local.feed($0) }
            records += local.takeFinals()
        }
        records += local.finish()
        #expect(records.count > 40)
        var withTrend = 0
        for record in records {
            let json = record.json
            let headline = try #require(HeadlineReader.read(json), "\(json)")
            #expect(headline == Self.decoded(json))
            #expect((headline.conversion == nil) == lean, "conversion is left out of the lean job's records only")
            if headline.trend != nil { withTrend += 1 }
        }
        #expect((withTrend > 0) == !lean, "records with a trend object were among the full and example jobs'")
    }

    @Test("escapes, whitespace, unknown members of every kind, null and missing optionals")
    func textVariants() throws {
        let texts = [
            #"{"segment":"a\"b\\c\/d\u00e9\ud83d\ude00\n","window":{"size":"1m","start_ms":-5,"end_ms":9223372036854775807},"final":false,"#
                + #""events":0,"users":{"unique":3},"engagement":{"rate":null},"conversion":{"rate":1.5e-3},"trend":null}"#,
            " {\n\t\"extra\" : [1, -0.5e+3, \"x\", true, false, null, {\"k\": [[]]}, {}],\r\n \"segment\" : \"all\", \"window\" : "
                + "{ \"start_ms\" : 0 , \"end_ms\" : 60000, \"size\" : \"1m\", \"start\": \"t\" }, \"final\" : true, \"events\" : 12,"
                + " \"users\" : { \"unique\" : 4, \"new\": 1 }, \"engagement\" : {}, \"conversion\" : { \"count\": 2, \"rate\" : 0 },"
                + " \"trend\" : { \"anomaly\" : true, \"z\": -1.25 } } ",
            #"{"segment":"s","window":{"size":"10m","start_ms":0,"end_ms":1},"final":true,"events":1,"users":{"unique":1},"#
                + #""engagement":{"rate":0.25},"conversion":{"rate":0.5},"trend":{"anomaly":null},"segment":"not this one"}"#,
            #"{"\u0073egment":"escaped key","window":{"size":"1m","start_ms":0,"end_ms":1},"final":true,"events":1,"#
                + #""users":{"unique":1},"engagement":{"rate":1},"conversion":{"rate":0}}"#,
        ]
        for json in texts {
            let headline = try #require(HeadlineReader.read(json), "\(json)")
            #expect(headline == Self.decoded(json), "\(json)")
        }
        #expect(HeadlineReader.read(texts[0])?.segment == "a\"b\\c/d\u{e9}\u{1F600}\n")
        #expect(HeadlineReader.read(texts[1])?.trend?.anomaly == true)
        #expect(HeadlineReader.read(texts[2])?.segment == "s", "a member given twice counts with its first value")
        #expect(HeadlineReader.read(texts[3])?.segment == "escaped key")
    }

    @Test("anything that is not a metric record is refused, as a general JSON decoder refuses it")
    func refusals() {
        let valid = #"{"segment":"all","window":{"size":"1m","start_ms":0,"end_ms":60000},"final":true,"events":3,"#
            + #""users":{"unique":2},"engagement":{"rate":0.5},"conversion":{"rate":null},"trend":null}"#
        #expect(HeadlineReader.read(valid) != nil)
        let malformed: [String] = ["", "{", "[]", "null", "{not json", valid + "x", valid + "{}", String(valid.dropLast())]
        let changes: [(String, String)] = [
            (#""events":3"#, #""events":"3""#),
            (#""events":3"#, #""events":3.5"#),
            (#""events":3"#, #""events":99999999999999999999"#),
            (#""events":3"#, #""events":03"#),
            (#""events":3,"#, ""),
            (#""final":true"#, #""final":1"#),
            (#""start_ms":0"#, #""start_ms":-"#),
            (#""users":{"unique":2}"#, #""users":{}"#),
            (#""engagement":{"rate":0.5}"#, #""engagement":null"#),
            (#""rate":0.5"#, #""rate":.5"#),
            (#""rate":0.5"#, #""rate":"0.5""#),
            (#""trend":null"#, #""trend":true"#),
            (#""segment":"all""#, #""segment":"a\qb""#),
            (#""segment":"all""#, #""segment":"\ud800x""#),
            (#""segment":"all""#, "\"segment\":\"a\u{1}b\""),
            (#""trend":null"#, #""trend":null,"x":nul"#),
            (#""trend":null"#, #""trend":null,"x":"# + String(repeating: "[", count: 1_000) + String(repeating: "]", count: 1_000)),
        ]
        let refused = malformed + changes.map { valid.replacingOccurrences(of: $0.0, with: $0.1) }
        for json in refused {
            #expect(HeadlineReader.read(json) == nil, "\(json)")
            #expect(Self.decoded(json) == nil, "the general decoder refuses it too: \(json.suffix(40))")
        }
        let trailingComma = valid.replacingOccurrences(of: #""trend":null"#, with: #""trend":null,"x":[1,]"#)
        #expect(HeadlineReader.read(trailingComma) == nil, "not JSON (the general decoder lets it pass)")
    }
}
