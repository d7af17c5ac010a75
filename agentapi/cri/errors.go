package cri

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/karman-project/karman/image"
	"github.com/karman-project/karman/stage0"
)

// grpcError gives err the gRPC code of its class (stage0's and image's
// error classes): NotFound, FailedPrecondition, InvalidArgument, ...
// The message is err's, one line.
func grpcError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Unknown
	switch {
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, stage0.ErrNotFound), errors.Is(err, image.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, stage0.ErrInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, stage0.ErrState), errors.Is(err, stage0.ErrAmbiguous):
		code = codes.FailedPrecondition
	}
	return status.Error(code, err.Error())
}

// notFound is the NotFound status of what (as "sandbox ID").
func notFound(what string) error {
	return status.Errorf(codes.NotFound, "%s: not found", what)
}

func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}
