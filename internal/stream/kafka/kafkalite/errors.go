package kafkalite

import "strconv"

// Error is a Kafka error code a broker answered with. franz-go's kerr has
// every code, with a map built at init; this package needs only these
// (TestErrorsMatchKerr checks names and retriability against kerr).
type Error struct {
	Code      int16
	Name      string
	Retriable bool // Kafka's RetriableException: sending again may succeed
}

func (e *Error) Error() string { return e.Name }

// Codes this package acts on.
const (
	codeUnknownTopicOrPartition  = 3
	codeLeaderNotAvailable       = 5
	codeNotLeader                = 6
	codeMessageTooLarge          = 10
	codeRecordListTooLarge       = 18
	codeClusterAuthorization     = 31
	codeTopicAlreadyExists       = 36
	codeOutOfOrderSequence       = 45
	codeDuplicateSequence        = 46
	codeInvalidProducerEpoch     = 47
	codeInvalidProducerIDMapping = 49
	codeUnknownProducerID        = 59
	codeFencedLeaderEpoch        = 74
)

var kafkaErrors = [...]Error{
	{-1, "UNKNOWN_SERVER_ERROR", false},
	{1, "OFFSET_OUT_OF_RANGE", false},
	{2, "CORRUPT_MESSAGE", true},
	{3, "UNKNOWN_TOPIC_OR_PARTITION", true},
	{4, "INVALID_FETCH_SIZE", false},
	{5, "LEADER_NOT_AVAILABLE", true},
	{6, "NOT_LEADER_FOR_PARTITION", true},
	{7, "REQUEST_TIMED_OUT", true},
	{8, "BROKER_NOT_AVAILABLE", true},
	{9, "REPLICA_NOT_AVAILABLE", true},
	{10, "MESSAGE_TOO_LARGE", false},
	{13, "NETWORK_EXCEPTION", true},
	{14, "COORDINATOR_LOAD_IN_PROGRESS", true},
	{15, "COORDINATOR_NOT_AVAILABLE", true},
	{16, "NOT_COORDINATOR", true},
	{17, "INVALID_TOPIC_EXCEPTION", false},
	{18, "RECORD_LIST_TOO_LARGE", false},
	{19, "NOT_ENOUGH_REPLICAS", true},
	{20, "NOT_ENOUGH_REPLICAS_AFTER_APPEND", true},
	{21, "INVALID_REQUIRED_ACKS", false},
	{29, "TOPIC_AUTHORIZATION_FAILED", false},
	{31, "CLUSTER_AUTHORIZATION_FAILED", false},
	{33, "UNSUPPORTED_SASL_MECHANISM", false},
	{34, "ILLEGAL_SASL_STATE", false},
	{35, "UNSUPPORTED_VERSION", false},
	{36, "TOPIC_ALREADY_EXISTS", false},
	{37, "INVALID_PARTITIONS", false},
	{38, "INVALID_REPLICATION_FACTOR", false},
	{40, "INVALID_CONFIG", false},
	{41, "NOT_CONTROLLER", true},
	{42, "INVALID_REQUEST", false},
	{43, "UNSUPPORTED_FOR_MESSAGE_FORMAT", false},
	{44, "POLICY_VIOLATION", false},
	{45, "OUT_OF_ORDER_SEQUENCE_NUMBER", false},
	{46, "DUPLICATE_SEQUENCE_NUMBER", false},
	{47, "INVALID_PRODUCER_EPOCH", false},
	{49, "INVALID_PRODUCER_ID_MAPPING", false},
	{56, "KAFKA_STORAGE_ERROR", true},
	{58, "SASL_AUTHENTICATION_FAILED", false},
	{59, "UNKNOWN_PRODUCER_ID", false},
	{74, "FENCED_LEADER_EPOCH", true},
	{75, "UNKNOWN_LEADER_EPOCH", true},
	{76, "UNSUPPORTED_COMPRESSION_TYPE", false},
	{87, "INVALID_RECORD", false},
	{89, "THROTTLING_QUOTA_EXCEEDED", true},
}

// errorForCode returns nil for 0 and an *Error otherwise; codes not in
// the table are named by number and not retriable.
func errorForCode(code int16) error {
	if code == 0 {
		return nil
	}
	for i := range kafkaErrors {
		if kafkaErrors[i].Code == code {
			return &kafkaErrors[i]
		}
	}
	return &Error{Code: code, Name: "Kafka error code " + strconv.Itoa(int(code))}
}

// hasCode reports whether err is the Kafka error code.
func hasCode(err error, code int16) bool {
	e, ok := err.(*Error)
	return ok && e.Code == code
}
