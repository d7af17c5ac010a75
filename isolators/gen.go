package isolators

//go:generate go run ./internal/gensyscalls
