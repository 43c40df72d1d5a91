// Command ovapipe-find is the test oracle for ovapipe's inventory resolver: it logs in to a
// vCenter (the simulator) as VSPHERE_SERVER, VSPHERE_USERNAME, VSPHERE_PASSWORD and
// VSPHERE_TLS_THUMBPRINT say, reads queries as JSON from stdin and prints, for each, what
// govmomi's own finder (the one govc uses) resolves. It is built offline in GOPATH mode from
// Debian's golang-github-vmware-govmomi-dev, like the simulator.
//
// Input:  [{"kind": "folder", "datacenter": "DC0", "path": "vm/a"}, ...]
// Output: [{"found": [{"ref": "group-v3", "path": "/DC0/vm/a"}], "error": ""}, ...]
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"strings"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"
)

type query struct {
	Kind       string `json:"kind"`
	Datacenter string `json:"datacenter"`
	Path       string `json:"path"`
}

type found struct {
	Ref  string `json:"ref"`
	Path string `json:"path"`
}

type answer struct {
	Found []found `json:"found"`
	Error string  `json:"error"`
}

func collect[T object.Reference](items []T, err error) answer {
	if err != nil {
		return answer{Found: []found{}, Error: err.Error()}
	}
	out := answer{Found: []found{}}
	for _, item := range items {
		path := ""
		if v := reflect.Indirect(reflect.ValueOf(item)); v.Kind() == reflect.Struct {
			if field := v.FieldByName("InventoryPath"); field.IsValid() {
				path = field.String()
			}
		}
		out.Found = append(out.Found, found{Ref: item.Reference().Value, Path: path})
	}
	return out
}

func resolve(ctx context.Context, finder *find.Finder, q query) answer {
	if q.Kind != "datacenter" {
		dc, err := finder.Datacenter(ctx, q.Datacenter)
		if err != nil {
			return answer{Found: []found{}, Error: "datacenter: " + err.Error()}
		}
		finder.SetDatacenter(dc)
	}
	switch q.Kind {
	case "datacenter":
		return collect(finder.DatacenterList(ctx, q.Path))
	case "folder":
		return collect(finder.FolderList(ctx, q.Path))
	case "datastore":
		return collect(finder.DatastoreList(ctx, q.Path))
	case "network":
		return collect(finder.NetworkList(ctx, q.Path))
	case "compute":
		return collect(finder.ComputeResourceList(ctx, q.Path))
	case "cluster":
		return collect(finder.ClusterComputeResourceList(ctx, q.Path))
	case "host":
		return collect(finder.HostSystemList(ctx, q.Path))
	case "pool":
		return collect(finder.ResourcePoolList(ctx, q.Path))
	case "vm":
		return collect(finder.VirtualMachineList(ctx, q.Path))
	}
	return answer{Found: []found{}, Error: "unknown kind " + q.Kind}
}

func run() error {
	ctx := context.Background()
	u, err := url.Parse("https://" + os.Getenv("VSPHERE_SERVER") + "/sdk")
	if err != nil {
		return err
	}
	u.User = url.UserPassword(os.Getenv("VSPHERE_USERNAME"), os.Getenv("VSPHERE_PASSWORD"))
	soapClient := soap.NewClient(u, false)
	soapClient.SetThumbprint(u.Host, strings.ToUpper(os.Getenv("VSPHERE_TLS_THUMBPRINT")))
	client, err := vim25.NewClient(ctx, soapClient)
	if err != nil {
		return err
	}
	if err := session.NewManager(client).Login(ctx, u.User); err != nil {
		return err
	}
	var queries []query
	if err := json.NewDecoder(os.Stdin).Decode(&queries); err != nil {
		return err
	}
	answers := []answer{}
	for _, q := range queries {
		answers = append(answers, resolve(ctx, find.NewFinder(client, true), q))
	}
	return json.NewEncoder(os.Stdout).Encode(answers)
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "ovapipe-find: %s\n", err)
		os.Exit(1)
	}
}
